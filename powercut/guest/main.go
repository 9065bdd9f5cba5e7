//go:build linux

// Command guest is /init of the power-cut VM (see package powercut).
//
// It mounts devtmpfs, proc and sysfs, loads the virtio modules listed in
// /modules/order, mounts /dev/vda (ext4) on /mnt, runs the workload chosen
// by kernel parameters (which reach it as environment variables), and
// reports on the console (ttyS0) with lines that start with "@ckp ".
//
// Parameters (all optional):
//
//	CKP_WORKLOAD  workload name (default "ckp")
//	CKP_MODE      workload mode, e.g. run | final for "ckp"
//	CKP_END       poweroff (default): sync, unmount, power off;
//	              hang: sleep forever after the workload (power-cut runs)
//	CKP_MOUNTOPTS ext4 mount options (default "commit=600")
//	CKP_SYSCTL    comma-separated vm.KEY=VALUE settings, or "none"
//	              (default: no periodic or early background writeback)
//	CKP_CHILD     set by /init in the environment of a child process it
//	              runs the workload in (see the ckp workload's
//	              CKP_KILLAFTER); the child skips the setup
//
// Console protocol: "@ckp ready ..." when the workload starts, workload
// lines (e.g. "@ckp acked N"), "@ckp done ...", "@ckp FAIL: ..." on error,
// "@ckp poweroff" right before powering off.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A workload runs on the mounted file system at /mnt. It must print
// "@ckp ready" (via ready) once the timed part starts.
type workload func(mode string) error

var workloads = map[string]workload{}

const defaultSysctl = "vm.dirty_writeback_centisecs=0," + // no periodic flusher wakeups
	"vm.dirty_expire_centisecs=360000," + // dirty data never "old"
	"vm.dirty_background_ratio=80," + // no early background writeback
	"vm.dirty_ratio=90"

func main() {
	if os.Getenv("CKP_CHILD") != "" && os.Getpid() != 1 {
		childMain()
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "guest: this is /init of the power-cut VM; it must run as pid 1")
		os.Exit(2)
	}
	defer func() {
		if r := recover(); r != nil {
			fail(fmt.Errorf("panic: %v", r))
		}
	}()
	if err := setup(); err != nil {
		fail(err)
	}
	name := env("CKP_WORKLOAD", "ckp")
	w, ok := workloads[name]
	if !ok {
		fail(fmt.Errorf("unknown workload %q", name))
	}
	if err := w(os.Getenv("CKP_MODE")); err != nil {
		fail(err)
	}
	if env("CKP_END", "poweroff") == "hang" {
		say("hang")
		for {
			time.Sleep(time.Hour)
		}
	}
	unix.Sync()
	if err := unix.Unmount("/mnt", 0); err != nil {
		fail(fmt.Errorf("unmount /mnt: %w", err))
	}
	poweroff()
}

// childMain runs the workload in a child process of /init (see
// startChild): no setup, and a failure ends only the child.
func childMain() {
	defer func() {
		if r := recover(); r != nil {
			say("FAIL: child: panic: %v", r)
			os.Exit(1)
		}
	}()
	w, ok := workloads[env("CKP_WORKLOAD", "ckp")]
	if !ok {
		say("FAIL: child: unknown workload")
		os.Exit(1)
	}
	if err := w(os.Getenv("CKP_MODE")); err != nil {
		say("FAIL: child: %v", err)
		os.Exit(1)
	}
	if env("CKP_END", "poweroff") == "hang" {
		for {
			time.Sleep(time.Hour)
		}
	}
}

// say prints one protocol line with a single write.
func say(format string, args ...any) {
	os.Stdout.WriteString("@ckp " + fmt.Sprintf(format, args...) + "\n")
}

// ready announces that the timed part of a workload starts.
func ready(format string, args ...any) {
	say("ready uptime=%s %s", uptime(), fmt.Sprintf(format, args...))
}

func fail(err error) {
	say("FAIL: %v", err)
	poweroff()
}

func poweroff() {
	say("poweroff")
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for { // not reached
		time.Sleep(time.Hour)
	}
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}

func setup() error {
	for _, d := range []string{"/dev", "/proc", "/sys", "/mnt"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil && err != unix.EBUSY {
		return fmt.Errorf("mount devtmpfs: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	if s := env("CKP_SYSCTL", defaultSysctl); s != "none" {
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("bad CKP_SYSCTL item %q", kv)
			}
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				return fmt.Errorf("sysctl %s: %w", k, err)
			}
		}
	}
	if err := loadModules("/modules"); err != nil {
		return err
	}
	if err := waitFor("/dev/vda", 10*time.Second); err != nil {
		return err
	}
	opts := env("CKP_MOUNTOPTS", "commit=600")
	if err := unix.Mount("/dev/vda", "/mnt", "ext4", 0, opts); err != nil {
		return fmt.Errorf("mount /dev/vda on /mnt (ext4, %q): %w", opts, err)
	}
	return nil
}

// loadModules loads the modules named in dir/order, in that order.
func loadModules(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "order"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // everything built in
	}
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(b)) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("finit_module %s: %w", name, err)
		}
	}
	return nil
}

func waitFor(path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
