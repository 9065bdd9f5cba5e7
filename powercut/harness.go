//go:build linux

// Package powercut runs power-cut tests: it boots a tiny Linux VM under
// qemu (TCG), runs a guest program as /init that writes to an ext4 disk
// image, kills qemu with SIGKILL at a chosen moment (losing everything the
// guest had not yet written to the virtual disk), then inspects the image
// from the host with e2fsck and debugfs.
//
// The guest is ./guest (command guest); it talks to the host through
// console lines that start with "@ckp " (see Message).
//
// Requirements: qemu-system-x86_64, e2fsprogs, and a kernel with its virtio
// modules. .ci/powercut-setup.sh installs/fetches them; LookupEnv finds them.
package powercut

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckp-go/ckp/powercut/internal/cpio"
)

// SetupHint tells how to get what the power-cut tests need.
const SetupHint = "run .ci/powercut-setup.sh as root (installs qemu-system-x86 and fetches " +
	"Debian's cloud kernel into $CKP_POWERCUT_CACHE, default ~/.cache/ckp-powercut)"

// Env holds the host tools and the guest kernel.
type Env struct {
	Qemu    string // qemu-system-x86_64
	Kernel  string // bzImage (vmlinuz)
	Modules string // dir with *.ko and "order" (load order); may be ""
	Mkfs    string // mkfs.ext4
	E2fsck  string
	Debugfs string
}

// LookupEnv finds the tools. Overrides: CKP_POWERCUT_QEMU,
// CKP_POWERCUT_KERNEL, CKP_POWERCUT_MODULES; otherwise the kernel and
// modules come from $CKP_POWERCUT_CACHE/current (default
// ~/.cache/ckp-powercut/current), as laid out by .ci/powercut-setup.sh.
func LookupEnv() (*Env, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("power-cut tests need a Linux host (have %s)", runtime.GOOS)
	}
	cache := os.Getenv("CKP_POWERCUT_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/root" // as .ci/powercut-setup.sh does without $HOME
		}
		cache = filepath.Join(home, ".cache", "ckp-powercut")
	}
	cur := filepath.Join(cache, "current")
	e := &Env{
		Kernel:  getenv("CKP_POWERCUT_KERNEL", filepath.Join(cur, "vmlinuz")),
		Modules: getenv("CKP_POWERCUT_MODULES", filepath.Join(cur, "modules")),
	}
	var missing []string
	look := func(dst *string, name, override string) {
		if p := os.Getenv(override); override != "" && p != "" {
			*dst = p
			return
		}
		if p, err := exec.LookPath(name); err == nil {
			*dst = p
			return
		}
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(dir, name); isExec(p) {
				*dst = p
				return
			}
		}
		missing = append(missing, name)
	}
	look(&e.Qemu, "qemu-system-x86_64", "CKP_POWERCUT_QEMU")
	look(&e.Mkfs, "mkfs.ext4", "")
	look(&e.E2fsck, "e2fsck", "")
	look(&e.Debugfs, "debugfs", "")
	if _, err := os.Stat(e.Kernel); err != nil {
		missing = append(missing, "kernel "+e.Kernel)
	}
	if e.Modules != "" {
		if _, err := os.Stat(e.Modules); err != nil {
			missing = append(missing, "modules dir "+e.Modules)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	return e, nil
}

// RequireEnv returns the Env or skips the test with SetupHint. With
// CKP_POWERCUT_REQUIRE=1 (for CI) a missing tool fails the test instead.
// It also skips in -short mode: each boot takes about 2 s of CPU.
func RequireEnv(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("power-cut test boots VMs; skipped in -short mode")
	}
	e, err := LookupEnv()
	if err != nil {
		msg := fmt.Sprintf("power-cut test needs qemu and a guest kernel: %v; %s", err, SetupHint)
		if os.Getenv("CKP_POWERCUT_REQUIRE") == "1" {
			t.Fatal(msg + " (CKP_POWERCUT_REQUIRE=1)")
		}
		t.Skip(msg)
	}
	return e
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// BuildGuest builds the Go package pkg (e.g. "./guest", relative to the
// current directory) as a static linux/amd64 binary at out.
func BuildGuest(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// File is an extra file for the initramfs.
type File struct {
	Name string      // path in the initramfs, e.g. "etc/x"
	Perm fs.FileMode // permission bits; 0 means 0644
	Data []byte
}

// WriteInitramfs writes an uncompressed newc initramfs to path holding
// initBinary as /init, dev/console, the directories the guest mounts on
// (dev proc sys mnt), the kernel modules as /modules/*.ko with their load
// order in /modules/order, and extra.
func (e *Env) WriteInitramfs(path, initBinary string, extra ...File) error {
	init, err := os.ReadFile(initBinary)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	dirs := map[string]bool{}
	var mkdirs func(string) error
	mkdirs = func(d string) error {
		if d == "." || d == "/" || d == "" || dirs[d] {
			return nil
		}
		if err := mkdirs(filepath.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return w.Dir(d, 0o755)
	}
	for _, d := range []string{"dev", "proc", "sys", "mnt", "modules"} {
		if err := mkdirs(d); err != nil {
			return err
		}
	}
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.File("init", 0o755, init); err != nil {
		return err
	}
	if e.Modules != "" {
		order, err := os.ReadFile(filepath.Join(e.Modules, "order"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err == nil {
			for _, name := range strings.Fields(string(order)) {
				b, err := os.ReadFile(filepath.Join(e.Modules, name))
				if err != nil {
					return err
				}
				if err := w.File("modules/"+name, 0o644, b); err != nil {
					return err
				}
			}
			if err := w.File("modules/order", 0o644, order); err != nil {
				return err
			}
		}
	}
	for _, f := range extra {
		name := strings.TrimPrefix(filepath.Clean("/"+f.Name), "/")
		if err := mkdirs(filepath.Dir(name)); err != nil {
			return err
		}
		perm := uint32(f.Perm.Perm())
		if perm == 0 {
			perm = 0o644
		}
		if err := w.File(name, perm, f.Data); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Disk is a raw disk image holding an ext4 file system (no partition
// table), attached to the guest as /dev/vda.
type Disk struct {
	Path string
	env  *Env
}

// NewDisk creates a fresh ext4 image of size bytes at path (sparse).
// mkfsArgs are extra mkfs.ext4 options.
func (e *Env) NewDisk(path string, size int64, mkfsArgs ...string) (*Disk, error) {
	args := append([]string{"-F", "-q"}, mkfsArgs...)
	args = append(args, path, fmt.Sprintf("%dk", size/1024))
	if b, err := exec.Command(e.Mkfs, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %v\n%s", err, b)
	}
	return &Disk{Path: path, env: e}, nil
}

// OpenDisk returns a Disk for an existing image.
func (e *Env) OpenDisk(path string) *Disk { return &Disk{Path: path, env: e} }

// FsckResult is the outcome of e2fsck.
type FsckResult struct {
	Code   int // 0 clean, 1 errors corrected, 2 corrected (reboot); >= 4 is an error
	Output string
}

// Problems returns what e2fsck fixed beyond what any crash of ext4
// leaves behind: the journal replay and the superblock's free block and
// inode counts (which ext4 updates lazily) are not problems.
func (r FsckResult) Problems() []string {
	var out []string
	prev := ""
	for _, l := range strings.Split(r.Output, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, "? yes") { // a question e2fsck -y answered
			desc := l
			if !strings.Contains(strings.TrimSuffix(l, "? yes"), " ") { // "Fix? yes" under its description
				desc = prev
			}
			if !strings.HasPrefix(desc, "Free blocks count wrong") &&
				!strings.HasPrefix(desc, "Free inodes count wrong") {
				out = append(out, desc)
			}
		}
		if l != "" {
			prev = l
		}
	}
	if r.Code >= 4 && len(out) == 0 {
		out = append(out, fmt.Sprintf("e2fsck exit %d", r.Code))
	}
	return out
}

// Fsck runs e2fsck -fy, which also replays the journal. Run it before
// reading files with debugfs, which does not replay the journal. It
// returns an error if e2fsck could not fix the file system (exit >= 4).
func (d *Disk) Fsck() (FsckResult, error) {
	cmd := exec.Command(d.env.E2fsck, "-fy", d.Path)
	b, err := cmd.CombinedOutput()
	r := FsckResult{Output: string(b)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		return r, err
	}
	if r.Code >= 4 {
		return r, fmt.Errorf("e2fsck exit %d:\n%s", r.Code, b)
	}
	return r, nil
}

// Dump copies the file fsPath (absolute, in the image) to hostPath. It
// returns an error wrapping fs.ErrNotExist if the file is not in the image.
func (d *Disk) Dump(fsPath, hostPath string) error {
	return d.debugfs("dump", fsPath, hostPath)
}

// DumpDir copies the directory fsDir recursively into hostDir (which must
// exist), as hostDir/<base of fsDir>.
func (d *Disk) DumpDir(fsDir, hostDir string) error {
	return d.debugfs("rdump", fsDir, hostDir)
}

// ReadFile returns the contents of fsPath in the image.
func (d *Disk) ReadFile(fsPath string) ([]byte, error) {
	dir, err := os.MkdirTemp(filepath.Dir(d.Path), "dump")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "f")
	if err := d.Dump(fsPath, out); err != nil {
		return nil, err
	}
	return os.ReadFile(out)
}

func (d *Disk) debugfs(cmdName, src, dst string) error {
	for _, s := range []string{src, dst} {
		if strings.ContainsAny(s, "\" \t\n") {
			return fmt.Errorf("debugfs: unsupported path %q", s)
		}
	}
	req := fmt.Sprintf("%s %s %s", cmdName, src, dst)
	cmd := exec.Command(d.env.Debugfs, "-R", req, d.Path)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs -R %q: %v\n%s", req, err, stderr.Bytes())
	}
	// debugfs exits 0 even when the request fails.
	if _, err := os.Stat(dst); err != nil || strings.Contains(stderr.String(), "not found") {
		if strings.Contains(stderr.String(), "not found") {
			return fmt.Errorf("%s in %s: %w", src, d.Path, fs.ErrNotExist)
		}
		return fmt.Errorf("debugfs -R %q produced nothing: %s", req, stderr.Bytes())
	}
	return nil
}

// BootOptions configures a VM.
type BootOptions struct {
	Initramfs string            // from WriteInitramfs
	Disk      string            // raw image attached as /dev/vda; "" for none
	Params    map[string]string // kernel parameters KEY=VALUE; the guest sees them as env vars
	MemoryMB  int               // default 512
	// Console, if set, gets every console line as it arrives (e.g. t.Log).
	Console func(line string)
}

// VM is a running qemu.
type VM struct {
	cmd     *exec.Cmd
	started time.Time
	console func(string)
	stderr  bytes.Buffer // qemu's stderr

	mu      sync.Mutex
	lines   []string
	partial string        // an unterminated last line, after exit
	changed chan struct{} // closed and replaced when lines grow or on exit
	done    chan struct{} // closed when qemu has exited and its output is read
	exited  bool
	waitErr error
	exitAt  time.Time
}

// Boot starts qemu. The caller must end it with Kill, Wait or Close.
func (e *Env) Boot(opts BootOptions) (*VM, error) {
	if opts.Initramfs == "" {
		return nil, errors.New("BootOptions.Initramfs is required")
	}
	mem := opts.MemoryMB
	if mem == 0 {
		mem = 512
	}
	keys := make([]string, 0, len(opts.Params))
	for k := range opts.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1",
		// Skip boot work the guest does not need (about 10% of a TCG boot):
		// speculation mitigations, crypto self-tests, audit, LSMs, the PS/2
		// controller probe.
		"mitigations=off", "cryptomgr.notests", "audit=0", "lsm=capability",
		"i8042.noaux", "i8042.nokbd", "i8042.nopnp"}
	for _, k := range keys {
		kv := k + "=" + opts.Params[k]
		if strings.ContainsAny(kv, " \t\n\"") || strings.Contains(k, ".") {
			return nil, fmt.Errorf("bad kernel parameter %q", kv)
		}
		cmdline = append(cmdline, kv)
	}
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-m", fmt.Sprint(mem), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-no-reboot",
		"-kernel", e.Kernel, "-initrd", opts.Initramfs,
		"-append", strings.Join(cmdline, " "),
	}
	if opts.Disk != "" {
		// cache=unsafe: qemu ignores the guest's flushes, but every write
		// the guest saw complete is already in the host's page cache, which
		// survives SIGKILL. So a kill loses exactly what the guest had not
		// written to the virtual disk.
		args = append(args, "-drive", "file="+strings.ReplaceAll(opts.Disk, ",", ",,")+",format=raw,if=virtio,cache=unsafe")
	}
	vm := &VM{cmd: exec.Command(e.Qemu, args...), console: opts.Console,
		changed: make(chan struct{}), done: make(chan struct{})}
	vm.cmd.Stderr = &vm.stderr
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := vm.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		return nil, err
	}
	go vm.read(out)
	return vm, nil
}

func (vm *VM) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if err == nil {
			s = strings.TrimRight(s, "\r\n")
			if vm.console != nil {
				vm.console(s)
			}
			vm.mu.Lock()
			vm.lines = append(vm.lines, s)
			close(vm.changed)
			vm.changed = make(chan struct{})
			vm.mu.Unlock()
			continue
		}
		werr := vm.cmd.Wait()
		vm.mu.Lock()
		vm.partial = s
		vm.exited = true
		vm.exitAt = time.Now()
		vm.waitErr = werr
		close(vm.changed)
		close(vm.done)
		vm.mu.Unlock()
		return
	}
}

// Started is when qemu was started.
func (vm *VM) Started() time.Time { return vm.started }

// Lines returns the complete console lines so far (kernel and guest).
func (vm *VM) Lines() []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines...)
}

// Messages returns the guest's protocol lines so far, without "@ckp ".
func (vm *VM) Messages() []string { return Messages(vm.Lines()) }

// Done is closed when qemu has exited and all its output has been read.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// WaitMessage waits until the guest prints a protocol line starting with
// prefix and returns it (without "@ckp "). It fails if qemu exits first.
func (vm *VM) WaitMessage(ctx context.Context, prefix string) (string, error) {
	seen := 0
	for {
		vm.mu.Lock()
		lines, exited, ch := vm.lines[seen:], vm.exited, vm.changed
		vm.mu.Unlock()
		for _, l := range lines {
			seen++
			if m, ok := Message(l); ok {
				if strings.HasPrefix(m, prefix) {
					return m, nil
				}
				if strings.HasPrefix(m, "FAIL") {
					return "", fmt.Errorf("guest: %s%s", m, vm.tail())
				}
			}
		}
		if exited {
			return "", fmt.Errorf("qemu exited before %q%s", prefix, vm.tail())
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w%s", prefix, ctx.Err(), vm.tail())
		}
	}
}

// Kill cuts the power: SIGKILL to qemu, then waits for it and for the rest
// of its console output. It reports whether qemu was still running (false
// if the guest had already powered off).
func (vm *VM) Kill() bool {
	vm.mu.Lock()
	running := !vm.exited
	vm.mu.Unlock()
	if running {
		_ = vm.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-vm.done
	return running
}

// Wait waits for qemu to exit by itself (the guest powers off). On ctx
// expiry it kills qemu and returns an error.
func (vm *VM) Wait(ctx context.Context) error {
	select {
	case <-vm.done:
	case <-ctx.Done():
		vm.Kill()
		return fmt.Errorf("waiting for qemu to exit: %w%s", ctx.Err(), vm.tail())
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.waitErr != nil {
		return fmt.Errorf("qemu: %v%s", vm.waitErr, vm.tailLocked())
	}
	return nil
}

// Close kills qemu if it still runs. It is safe to call more than once.
func (vm *VM) Close() { vm.Kill() }

func (vm *VM) tail() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.tailLocked()
}

func (vm *VM) tailLocked() string {
	lines := vm.lines
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	s := "\n--- console (last lines) ---\n" + strings.Join(lines, "\n")
	if vm.partial != "" {
		s += "\n" + vm.partial + " [no newline]"
	}
	if vm.exited {
		s += fmt.Sprintf("\n--- qemu stderr ---\n%s", vm.stderr.String())
	}
	return s
}

// Message reports whether line is a guest protocol line and returns it
// without the "@ckp " prefix.
func Message(line string) (string, bool) {
	i := strings.Index(line, "@ckp ")
	if i < 0 {
		return "", false
	}
	return line[i+len("@ckp "):], true
}

// Messages filters the protocol lines out of console lines.
func Messages(lines []string) []string {
	var out []string
	for _, l := range lines {
		if m, ok := Message(l); ok {
			out = append(out, m)
		}
	}
	return out
}

// RunOptions configures one Run.
type RunOptions struct {
	BootOptions
	// CutAfter is the delay after the guest's "@ckp ready" line before the
	// power cut. Negative: no cut; the guest must finish and power off.
	CutAfter time.Duration
	// Timeout bounds the whole run (default 2 minutes).
	Timeout time.Duration
}

// RunResult is what a Run observed.
type RunResult struct {
	Lines    []string      // all console lines
	Messages []string      // guest protocol lines, without "@ckp "
	Cut      bool          // qemu was killed (false: guest powered off first)
	Boot     time.Duration // qemu start to "ready"
	Ran      time.Duration // "ready" to the cut or to qemu's exit
}

// Run boots a VM, waits for "@ckp ready", then either cuts the power after
// CutAfter or waits for the guest to power off. It fails if the guest
// reports FAIL or, without a cut, does not reach "@ckp poweroff".
func (e *Env) Run(ctx context.Context, o RunOptions) (*RunResult, error) {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	vm, err := e.Boot(o.BootOptions)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	if _, err := vm.WaitMessage(ctx, "ready"); err != nil {
		return nil, err
	}
	r := &RunResult{}
	readyAt := time.Now()
	r.Boot = readyAt.Sub(vm.Started())
	if o.CutAfter >= 0 {
		timer := time.NewTimer(o.CutAfter)
		select {
		case <-timer.C:
		case <-vm.Done():
		case <-ctx.Done():
		}
		timer.Stop()
		r.Cut = vm.Kill()
		r.Ran = time.Since(readyAt)
		if !r.Cut {
			vm.mu.Lock()
			r.Ran = vm.exitAt.Sub(readyAt)
			vm.mu.Unlock()
		}
	} else {
		if err := vm.Wait(ctx); err != nil {
			return nil, err
		}
		r.Ran = time.Since(readyAt)
	}
	r.Lines = vm.Lines()
	r.Messages = Messages(r.Lines)
	for _, m := range r.Messages {
		if strings.HasPrefix(m, "FAIL") {
			return r, fmt.Errorf("guest: %s%s", m, vm.tail())
		}
	}
	if !r.Cut {
		if len(r.Messages) == 0 || r.Messages[len(r.Messages)-1] != "poweroff" {
			return r, fmt.Errorf("qemu exited without the guest powering off%s", vm.tail())
		}
	}
	return r, nil
}

// CycleOptions configures one Cycle.
type CycleOptions struct {
	RunOptions        // BootOptions.Disk is set by Cycle
	DiskPath   string // where to create the image (e.g. in t.TempDir())
	DiskSize   int64  // default 512 MiB
}

// Cycle is one power-cut cycle: a fresh disk, a Run, then e2fsck.
type Cycle struct {
	*RunResult
	Disk *Disk
	Fsck FsckResult
	// Host-side times.
	MkfsTime, RunTime, FsckTime time.Duration
}

// Cycle makes a fresh ext4 image, boots the guest on it, cuts the power
// (or lets it finish) as o.CutAfter says, and runs e2fsck. It fails if
// e2fsck finds more than a crash leaves behind (see FsckResult.Problems).
// Read what survived with c.Disk.ReadFile or c.Disk.Dump.
func (e *Env) Cycle(ctx context.Context, o CycleOptions) (*Cycle, error) {
	c := &Cycle{}
	size := o.DiskSize
	if size == 0 {
		size = 512 << 20
	}
	t0 := time.Now()
	var err error
	if c.Disk, err = e.NewDisk(o.DiskPath, size); err != nil {
		return nil, err
	}
	c.MkfsTime = time.Since(t0)
	o.Disk = c.Disk.Path
	t0 = time.Now()
	c.RunResult, err = e.Run(ctx, o.RunOptions)
	c.RunTime = time.Since(t0)
	if err != nil {
		return c, err
	}
	t0 = time.Now()
	c.Fsck, err = c.Disk.Fsck()
	c.FsckTime = time.Since(t0)
	if err != nil {
		return c, err
	}
	if p := c.Fsck.Problems(); len(p) > 0 {
		return c, fmt.Errorf("e2fsck fixed more than a crash leaves behind: %q\n%s", p, c.Fsck.Output)
	}
	return c, nil
}
