/*
 * ckp_util.h: the C interface of ckp, a checkpoint library.
 *
 * A program registers named regions of its memory on a checkpoint file, saves them as
 * numbered versions, many times a second if it likes, and after a crash (kill -9
 * included) restores any version and carries on. A checkpoint "file" is two files on
 * disk: the data file at the path given to ckpOpen and an index file beside it (the
 * same path with ".idx" appended).
 *
 * This header declares the classic ckp_util functions (ckpOpen, ckpClose, ckpLocate,
 * ckpRegister, ckpUnregister, ckpSave, ckpSaveAll, ckpRestore, ckpRestoreAll) and a few
 * additions (ckpSync, ckpNewest, ckpStrerror, ckpLastError, and for the remote tier
 * ckpFlush, ckpJobVersion, ckpRestoreJob). The library behind it is written in Go and
 * built with
 *
 *     go build -buildmode=c-shared  -o libckp.so ./capi     (shared)
 *     go build -buildmode=c-archive -o libckp.a  ./capi     (static)
 *
 * and a program builds against it with
 *
 *     cc prog.c $(pkg-config --cflags --libs ckp)                 (after capi/install.sh)
 *     cc -I capi prog.c -L . -lckp -Wl,-rpath,$PWD                  (in the source tree)
 *     cc -I capi prog.c libckp.a -lpthread -ldl -lm                 (static)
 *
 * A minimal program:
 *
 *     #include <stdio.h>
 *     #include "ckp_util.h"
 *
 *     int main(void) {
 *         static double grid[1024];
 *         CheckpointFile f;
 *         Checkpoint c;
 *         int st = ckpOpen("run.ckp", "sync=every:10 keep=3", &f);
 *         if (st != 0) { fprintf(stderr, "%s\n", ckpLastError()); return 1; }
 *         ckpRegister(f, "grid", grid, sizeof grid, &c);
 *         if (ckpRestore(c, 0) == 0) puts("resumed from the newest version");
 *         for (int step = 0; step < 1000; step++) {
 *             ... compute on grid ...
 *             if ((st = ckpSave(c)) != 0) { fprintf(stderr, "%s\n", ckpLastError()); return 1; }
 *         }
 *         return ckpClose(f);
 *     }
 *
 * STATUS CODES
 *
 * Every function that returns int returns 0 on success and an errno value (from
 * <errno.h>) on failure:
 *
 *     EINVAL       a bad argument: a NULL handle or pointer, an empty or over-long name
 *                  (1..255 bytes), a NULL or empty region, a bad options string (an
 *                  unknown key is named in ckpLastError), a save on a read-only file
 *     ENOENT       no checkpoint registered under that name, or the Checkpoint was
 *                  unregistered
 *     EEXIST       a checkpoint of that name is already registered on the file
 *     ERANGE       the version names no kept version (never saved, dropped by the keep=
 *                  setting, or out of the relative range)
 *     EMSGSIZE     the saved version's size differs from the registered region's
 *     EBADF        the CheckpointFile was closed (also for its Checkpoints)
 *     EWOULDBLOCK  another writer, in this process or another, holds the file
 *     EIO          the file is not a ckp file, or a version's bytes do not match their
 *                  hash (damaged data is never handed back)
 *     EFBIG        the save would grow the data file past its maximum size (max_size=);
 *                  nothing is saved and every earlier version stays
 *     EREMOTEIO    the remote tier failed (see REMOTE TIER): the store could not be
 *                  reached within timeout=, it denied access, the bucket is missing,
 *                  or an upload failed; ckpLastError says which. The local file is
 *                  never affected. (EREMOTEIO is Linux's; elsewhere this is EIO.)
 *     other        an operating-system error, as its errno: ENOSPC, EACCES, EROFS, ...
 *
 * ckpStrerror(status) describes a status in a static string; ckpLastError() returns
 * the full message of the calling thread's last failure, with the names and numbers
 * involved.
 *
 * HANDLES
 *
 * CheckpointFile and Checkpoint are opaque handles (numbers, not addresses: never
 * dereference them). A handle of a closed file, or of an unregistered checkpoint, is
 * refused with EBADF or ENOENT, never a crash; a NULL handle is EINVAL. Handles are
 * never reused. Every function is safe to call from several threads at once.
 *
 * MEMORY RULES
 *
 * The library keeps the address and size given to ckpRegister. It reads the region
 * during ckpSave and ckpSaveAll, and writes it during ckpRestore and ckpRestoreAll,
 * and at no other time. The region must stay valid (not freed, not unmapped) until
 * ckpUnregister or ckpClose for it returns. Do not write to a region while a save
 * that includes it runs, nor read it while a restore writes it (in another thread).
 * A region should hold plain data: saving a pointer saves an address, which means
 * nothing in the process that restores it.
 *
 * REMOTE TIER
 *
 * With the remote= option, versions saved in the local file are also copied, in the
 * background, to a store every node of a job can reach: an S3 bucket
 * (remote=s3://bucket/prefix, with endpoint= for a server other than AWS S3) or a
 * directory on a shared file system (remote=/shared/run42 or dir:///shared/run42).
 * The S3 keys come from the environment variables AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), as the process had them when the
 * library was loaded: the Go runtime keeps its own copy of the environment, so a
 * setenv() in the program is not seen. Set them before the program starts.
 * Saves stay local and as fast; uploads run behind them. A version is committed in
 * the store once all of its bytes and then its manifest are there. Each rank of a
 * job (rank=, ranks=) opens its own local file with the same remote= and has its own
 * versions in the store; the job version is the newest version every rank committed
 * (ckpJobVersion), and a restart of every rank with ckpRestoreJob puts them all at it,
 * without any communication between the ranks: a job restarts on other nodes, whose
 * local files are missing or behind, from the store alone. docs/REMOTE.md in the
 * source tree describes the protocol, every object in the store, and what each
 * failure leaves behind.
 *
 *   - ckpFlush waits until everything saved so far is committed in the store;
 *     ckpClose does too (up to timeout=).
 *   - A failed upload is never dropped: the next ckpSave, ckpSaveAll, ckpFlush or
 *     ckpClose returns EREMOTEIO (that save is then not made). Transient errors (the
 *     network, a server down for a while) are retried for as long as it takes; a save
 *     only waits for the store when more than max_pending= bytes wait for upload.
 *   - ckpRestore and ckpRestoreAll of a version the local file lacks, or holds
 *     damaged, fetch the store's copy (checked against its hashes first).
 *   - Version numbers mean the same step on every rank only if every rank saves with
 *     ckpSaveAll at the same steps and restarts with ckpRestoreJob. In a job of
 *     several ranks, ckpRestoreAll also rewinds: every version after the one restored
 *     is dropped, from the local file at once and from this rank's store in the
 *     background (ckpFlush waits for it), and the next save follows it.
 *
 * RUNTIME RULES (the library holds a Go runtime, started when it is loaded)
 *
 *   - Signal handlers the program installs after the library is loaded (MPI fabrics
 *     and profilers do) must use SA_ONSTACK, or the process dies when a signal arrives
 *     on a thread that runs Go code ("signal handler without SA_ONSTACK"). A handler
 *     the program installs later for SIGSEGV or SIGBUS replaces the runtime's, which
 *     turns a fault in the library (a checkpoint file truncated by another program
 *     under a running save) into an EIO status: with the program's handler it is a
 *     crash instead. Open MPI leaves handlers that exist at MPI_Init alone.
 *   - fork() without exec() after the library is loaded is unsupported: the child must
 *     not call the library (it may hang). fork() followed by exec() is fine.
 *   - The library is never unloaded: do not dlclose() it.
 *   - The runtime reads GOMAXPROCS (the environment variable, else the CPUs the process
 *     may run on) when the library is loaded; large saves and restores use that many
 *     threads unless the workers= option says otherwise. Under MPI, where several ranks
 *     share a node, set GOMAXPROCS or workers= to the cores of one rank.
 *   - The runtime uses SIGURG to preempt its own threads: do not take SIGURG over,
 *     and retry a system call that fails with EINTR in a thread that also calls the
 *     library (the runtime's handlers use SA_RESTART, which covers most calls, not all).
 */
#ifndef CKP_UTIL_H
#define CKP_UTIL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CheckpointFile is an open checkpoint file. */
typedef struct _CheckpointFile *CheckpointFile;

/* Checkpoint is a named region registered on a CheckpointFile. */
typedef struct _Checkpoint *Checkpoint;

/*
 * ckpOpen opens the checkpoint file at pathname, creating it (and its index file,
 * pathname with ".idx" appended) if it does not exist, and stores its handle in *file.
 * A file that exists is checked and any torn or damaged tail left by a crash is
 * dropped; what was saved before stays restorable. One process at a time may have a
 * file open: a second ckpOpen of an open file fails with EWOULDBLOCK.
 *
 * options is NULL (the defaults) or a string of space-separated key=value pairs:
 *
 *     sync=none           never flush on its own (the default): every completed save
 *                         survives the death of the process, not a power loss unless
 *                         ckpSync or ckpClose ran after it
 *     sync=async          start writing each save to the device without waiting for it
 *     sync=always         every ckpSave and ckpSaveAll is durable when it returns
 *     sync=every:N        every N-th save is durable, with every save before it
 *     sync=interval:D     a background thread makes saves durable at least every D,
 *                         a duration such as 500ms, 2s or 1m
 *     keep=K              keep the newest K versions of each checkpoint and reuse the
 *                         space of older ones (0, the default, keeps every version)
 *     workers=W           threads that copy and hash one large save or restore
 *                         together (default GOMAXPROCS; 1 uses the calling thread only)
 *     max_size=BYTES      the largest the data file may grow to (default 1 TiB); a
 *                         save past it fails with EFBIG
 *     differential=1      large regions save only the blocks changed since their
 *                         previous version (the kernel tells which pages were written
 *                         where it can; every block is hashed elsewhere)
 *     block_size=BYTES    the block of differential saves, a power of two from 4096
 *                         to 2097152 (default 4096)
 *
 * and the remote tier's (see REMOTE TIER; every key below needs remote=):
 *
 *     remote=LOCATION     the store: s3://bucket/prefix, an S3 bucket (the prefix is
 *                         optional; the keys come from AWS_ACCESS_KEY_ID and
 *                         AWS_SECRET_ACCESS_KEY as the process started with them),
 *                         or a directory: dir://PATH or a plain path, created if
 *                         missing
 *     endpoint=HOST:PORT  the S3 server (or a URL, https://host:port); default AWS S3.
 *                         For s3:// only, as are insecure= and region=
 *     insecure=1          talk plain HTTP to the endpoint (default 0: HTTPS)
 *     region=NAME         the bucket's region (default us-east-1)
 *     rank=R, ranks=N     this process is rank R (0..N-1) of a job of N ranks (default
 *                         rank 0 of 1). Every rank passes the same remote= and ranks=
 *     every=N             upload every N-th version: version v when v is a multiple of
 *                         N (default 1, every version). The same on every rank
 *     keep_remote=K       keep the newest K committed versions of each checkpoint in
 *                         the store, never deleting the job version or anything newer
 *                         (default: keep=; 0 keeps every version)
 *     max_pending=BYTES   a save waits while more than this many bytes saved wait for
 *                         upload (default 1073741824, 1 GiB)
 *     timeout=D           how long a call waits for the store: ckpOpen (which asks
 *                         the store what is committed), a save waiting under
 *                         max_pending=, a restore from the store, ckpFlush,
 *                         ckpJobVersion, ckpRestoreJob and ckpClose; a duration such
 *                         as 500ms or 2m (default 1m). Past it the call fails with
 *                         EREMOTEIO
 *
 * With a remote tier, ckpOpen asks the store which versions this rank committed:
 * local versions it lacks are queued for upload in a job of one rank; in a job of
 * several they are not (the job restarts from what every rank committed), and a
 * checkpoint whose local versions are older than the store's newest (a restart on
 * another node) gets that version from the store.
 *
 * Errors: EINVAL (NULL pathname or file, empty pathname, a bad or unknown option, a
 * key given twice, a remote key without remote=, endpoint=, insecure= or region= with
 * a directory, rank= not below ranks=, a malformed or unsupported store location, an
 * s3:// location without keys), EWOULDBLOCK (another writer holds the file), EIO (not
 * a ckp file; it is left untouched), EREMOTEIO (the store could not be reached within
 * timeout=, denied access, has no such bucket, or its directory cannot be created),
 * or the operating system's errno (EACCES, ENOENT for a missing directory, ENOSPC,
 * ...). On failure *file is set to NULL.
 */
int ckpOpen(const char *pathname, const char *options, CheckpointFile *file);

/*
 * ckpClose makes every version saved so far durable, unregisters every checkpoint of
 * the file and closes it. Afterwards the file's handle and those of its checkpoints
 * are refused with EBADF, and the program may free the regions. The file is closed
 * even when ckpClose reports an error. With a remote tier it first waits, up to
 * timeout=, for the uploads queued so far (as ckpFlush).
 *
 * Errors: EINVAL (NULL file), EBADF (already closed), EREMOTEIO (uploads failed or
 * did not finish within timeout=; the local file holds every version), or the
 * operating system's errno if the final flush failed (EIO, ENOSPC, ...).
 */
int ckpClose(CheckpointFile file);

/*
 * ckpLocate returns the checkpoint registered under name on file, or NULL if there is
 * none (and for a NULL, closed or unknown file, or a NULL name); ckpLastError then
 * says why. It returns the handle ckpRegister returned.
 */
Checkpoint ckpLocate(CheckpointFile file, const char *name);

/*
 * ckpRegister registers the size bytes at address under name (1 to 255 bytes, any
 * bytes but NUL) and stores its handle in *checkpoint, unless checkpoint is NULL (the
 * handle can be found later with ckpLocate). If the file holds versions saved under
 * that name earlier, in this process or another, the checkpoint picks them up: they
 * can be restored and new saves continue their numbering. The region may differ in
 * size from them; restoring a version of another size fails with EMSGSIZE. Nothing is
 * read from or written to the region until a save or restore (see MEMORY RULES).
 *
 * Errors: EINVAL (NULL file, NULL or empty or over-long name, NULL address, size 0),
 * EEXIST (the name is registered already), EBADF (file closed). On failure
 * *checkpoint is set to NULL.
 */
int ckpRegister(CheckpointFile file, const char *name, void *address, size_t size,
                Checkpoint *checkpoint);

/*
 * ckpUnregister removes the checkpoint from its file. Its saved versions stay in the
 * file (registering the name again picks them up); afterwards its handle is refused
 * with ENOENT and the program may free the region.
 *
 * Errors: EINVAL (NULL checkpoint), ENOENT (unregistered already), EBADF (file
 * closed).
 */
int ckpUnregister(Checkpoint checkpoint);

/*
 * ckpSave saves the checkpoint's region as a new version: the newest version number
 * plus one (the first is 1). Each version carries a hash of its bytes. When ckpSave
 * returns, the version survives the death of the process; whether it survives a power
 * loss depends on the sync= option.
 *
 * Errors: EINVAL (NULL checkpoint, a read-only file), ENOENT (unregistered), EBADF
 * (file closed), EFBIG (the data file would pass its maximum size), EREMOTEIO (with a
 * remote tier: an earlier upload failed, reported once, or the save waited for room
 * under max_pending= longer than timeout=), or the operating system's errno (ENOSPC,
 * EIO, ...); the newest version is then unchanged.
 */
int ckpSave(Checkpoint checkpoint);

/*
 * ckpSaveAll saves every region registered on file as one new version each,
 * atomically: after a crash at any instant, either all of this ckpSaveAll's versions
 * exist or none does, so the newest versions of all regions always come from the same
 * ckpSaveAll. A file with nothing registered saves nothing and returns 0.
 *
 * Errors: as ckpSave (EINVAL for a NULL file, EBADF for a closed one).
 */
int ckpSaveAll(CheckpointFile file);

/*
 * ckpRestore copies a version of the checkpoint into its region. version 1..N is
 * absolute (the numbers saves gave); 0 is the newest, -1 the one before it, and so on
 * back to -(N-1). The version's hash is checked before any byte reaches the region:
 * on any error the region is left as it was.
 *
 * With a remote tier, a version the local file does not hold (dropped by keep=, or
 * saved on another node) or holds damaged is fetched from the store, checked, and
 * only then copied.
 *
 * Errors: EINVAL (NULL checkpoint), ENOENT (unregistered), EBADF (file closed), ERANGE
 * (no such version kept: nothing saved yet, dropped by keep=, or out of range),
 * EMSGSIZE (the version's size differs from the region's), EIO (the version's bytes
 * are damaged), EREMOTEIO (the store's copy could not be fetched within timeout=).
 */
int ckpRestore(Checkpoint checkpoint, int version);

/*
 * ckpRestoreAll restores the same version (absolute or relative, as in ckpRestore) of
 * every checkpoint registered on file. Every version is located and checked before any
 * region is written: on any error no region is modified. A file with nothing
 * registered restores nothing and returns 0.
 *
 * In a job of several ranks (ranks= above 1), ckpRestoreAll also rewinds: every
 * version after the one restored is dropped, locally and from this rank's store, and
 * the next save is numbered one past it, so that ckpRestoreAll of the job version
 * (ckpJobVersion) on every rank keeps their numbers in step, as ckpRestoreJob does.
 *
 * Errors: as ckpRestore (EINVAL for a NULL file, EBADF for a closed one).
 */
int ckpRestoreAll(CheckpointFile file, int version);

/*
 * ckpSync makes every version saved so far on file durable, whatever the sync=
 * option: when it returns 0 they survive a crash of the operating system or a power
 * loss.
 *
 * Errors: EINVAL (NULL file), EBADF (closed), or the operating system's errno.
 */
int ckpSync(CheckpointFile file);

/*
 * ckpNewest stores in *version the newest kept version number of the checkpoint, or
 * 0 if it has none (nothing saved under its name yet). Under MPI, the ranks of a job
 * agree on where to restart with MPI_Allreduce(MPI_MIN) over it (examples/mpi), or,
 * with a remote tier, with ckpRestoreJob and no communication at all.
 *
 * Errors: EINVAL (NULL checkpoint or version), ENOENT (unregistered), EBADF (file
 * closed).
 */
int ckpNewest(Checkpoint checkpoint, int *version);

/*
 * ckpFlush waits until every version saved on file so far that the every= rule
 * uploads is committed in the store, then applies the store's retention
 * (keep_remote=). When it returns 0, a restart on any node finds them. Without a
 * remote tier there is nothing to wait for: it returns 0.
 *
 * Errors: EINVAL (NULL file), EBADF (closed), EREMOTEIO (an upload failed, or the
 * uploads did not finish within timeout=: they go on in the background, and a later
 * ckpFlush may succeed).
 */
int ckpFlush(CheckpointFile file);

/*
 * ckpJobVersion stores in *version the job version: the newest version number that
 * every rank 0..ranks-1 of the job has committed in the store, for every checkpoint
 * its ckpSaveAll (or ckpSave) of that number saved; or 0 if there is none yet (as
 * ckpNewest says 0 for no version). It reads the store and changes nothing. Every
 * rank restarting at ckpRestoreAll(file, job version) gives a consistent job; when
 * it is 0, ckpRestoreJob starts the job over.
 *
 * Errors: EINVAL (NULL file or version, or a file without a remote tier), EBADF
 * (closed), EREMOTEIO (the store could not be read within timeout=).
 */
int ckpJobVersion(CheckpointFile file, int *version);

/*
 * ckpRestoreJob restarts this rank of a job (an extension of the classic interface,
 * as are ckpFlush and ckpJobVersion): it restores every checkpoint registered on file
 * at the job version (see ckpJobVersion) and rewinds to it, so that the next save is
 * numbered one past it; versions after it are dropped, from the local file at once
 * and from this rank's store in the background (ckpFlush waits for it). When the job
 * has no version yet, it starts over: every version of the registered checkpoints is
 * dropped, the regions are left as they are, and the next save is version 1. It
 * stores the version restored in *version (0 when it started over), unless version
 * is NULL.
 *
 * Every rank of a job calls it after registering its regions and before its first
 * save; the ranks then agree on the restart step without talking to each other,
 * provided no rank saves a new version before every rank has called it (as when each
 * step exchanges data with the other ranks: examples/mpi). The version restored may
 * come from the store (a rank restarted on another node).
 *
 * Errors: EINVAL (NULL file, or a file without a remote tier), EBADF (closed),
 * EMSGSIZE (a version's size differs from its region's), EIO (damaged data),
 * EREMOTEIO (the store could not be read within timeout=). On error no region is
 * modified.
 */
int ckpRestoreJob(CheckpointFile file, int *version);

/*
 * ckpStrerror returns a static description of a status code returned by this library
 * ("ckp: no such version" for ERANGE, the system's description for other errno
 * values). It never returns NULL; the string must not be freed or modified.
 */
const char *ckpStrerror(int status);

/*
 * ckpLastError returns the full message of the last failure of a call to this library
 * in the calling thread (for example "ckp: checkpoint already registered: checkpoint
 * \"grid\""), or "" if none failed yet. Successful calls leave it unchanged. The string
 * belongs to the thread and stays valid until its next failing call; copy it to keep
 * it.
 */
const char *ckpLastError(void);

#ifdef __cplusplus
}
#endif

#endif /* CKP_UTIL_H */
