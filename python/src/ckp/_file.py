"""File and Checkpoint: a checkpoint file and the regions registered on it."""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import byref, c_int, c_void_p
from typing import Any, Dict, List, NamedTuple, Optional, Union

from ._errors import ClosedError, NotFoundError, VersionError, check, from_status, invalid
from ._lib import lib

#: Anything ckp.open takes as a path.
PathLike = Union[str, "os.PathLike[str]"]

#: A writable, C-contiguous buffer: a numpy array, a bytearray, a memoryview of one,
#: an array.array, a torch CPU tensor, ...
Buffer = Any

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

# The options ckp.open passes to ckpOpen, by kind of value.
_INT_KEYS = ("keep", "workers", "max_size", "block_size", "every", "rank", "ranks", "keep_remote", "max_pending")
_BOOL_KEYS = ("differential", "insecure")
_STR_KEYS = ("sync", "remote", "endpoint", "region", "timeout", "launch")


def _c_string(what: str, s: Union[str, bytes]) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise invalid(f"{what} {s!r} holds a NUL character")
    return b


def _version(v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise invalid(f"version {v!r} is not an int")
    if not _INT_MIN <= v <= _INT_MAX:
        raise VersionError(34, f"ckp: no such version: version {v} is out of the C int range")
    return v


def options_string(options: Optional[str] = None, **settings: Any) -> str:
    """Returns the ckpOpen options string of open's keyword settings (None ones left
    out), after the raw options string if one is given."""
    parts = [options] if options else []
    for key, value in settings.items():
        if value is None:
            continue
        if key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise invalid(f"{key}= wants True or False, not {value!r}")
            text = "1" if value else "0"
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise invalid(f"{key}= wants an int, not {value!r}")
            text = str(value)
        elif key in _STR_KEYS:
            if key == "timeout" and isinstance(value, (int, float)) and not isinstance(value, bool):
                text = f"{float(value)!r}s"  # seconds
            elif key == "remote" and isinstance(value, os.PathLike):
                text = os.fspath(value)
            elif isinstance(value, str):
                text = value
            else:
                raise invalid(f"{key}= wants a str, not {value!r}")
        else:
            raise invalid(f"unknown option {key}= (see help(ckp.open))")
        if any(c.isspace() or c == "," for c in text) or text == "":
            raise invalid(f"{key}={text!r}: a value cannot be empty or hold a space or a comma")
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _region(obj: Buffer) -> "ctypes.Array[ctypes.c_char]":
    """Returns a ctypes array over obj's memory, which holds a buffer export of obj
    for as long as it lives (a bytearray cannot be resized meanwhile, a numpy array
    not resized in place), so the address stays valid."""
    try:
        mv = memoryview(obj)
    except TypeError:
        mv = _tensor_view(obj)
    if mv.readonly:
        raise invalid(f"the region ({type(obj).__name__}) is read-only: the library writes it on restore")
    if not mv.c_contiguous:
        raise invalid(f"the region ({type(obj).__name__}) is not C-contiguous")
    if mv.nbytes == 0:
        raise invalid(f"the region ({type(obj).__name__}) is empty")
    return (ctypes.c_char * mv.nbytes).from_buffer(mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv)


def _tensor_view(obj: Any) -> memoryview:
    """A memoryview of a torch CPU tensor's bytes (tensors do not export a buffer)."""
    if not (hasattr(obj, "is_contiguous") and hasattr(obj, "numpy") and hasattr(obj, "device")):
        raise invalid(f"a {type(obj).__name__} is not a buffer (want a numpy array, bytearray, memoryview, torch CPU tensor, ...)")
    if obj.device.type != "cpu":
        raise invalid(f"the tensor is on {obj.device}, not the CPU")
    if not obj.is_contiguous():
        raise invalid("the tensor is not contiguous")
    import torch  # only reached for tensors, so torch is there

    flat = obj.detach().reshape(-1)
    if flat.data_ptr() != obj.data_ptr():
        raise invalid("the tensor's storage cannot be viewed in place")
    # As bytes: numpy has no bfloat16, and the library only wants the bytes. The
    # numpy array keeps the tensor (and so its storage) alive.
    return memoryview(flat.view(torch.uint8).numpy())


class JobLife(NamedTuple):
    """The job's newest life and its restart point (File.job_life)."""

    #: The number of the job's newest life: 1, 2, ...; each restore_job of a rank
    #: restarted after it joined the newest life begins the next. 0 when no rank has
    #: joined the job yet.
    life: int
    #: The life's restart point, the job version (File.job_version): the newest
    #: version complete on every rank in it, else the version it began from; 0 if none.
    version: int


class Checkpoint:
    """A named region registered on a File (File.register returns it).

    The region object is held (kept alive) while it is registered. save() and
    restore() are File.save(name) and File.restore(name, version).
    """

    __slots__ = ("_file", "_handle", "_name", "_buffer", "_array")

    def __init__(self, file: "File", handle: int, name: str, buffer: Buffer, array: Any) -> None:
        self._file = file
        self._handle = handle
        self._name = name
        self._buffer = buffer
        self._array = array

    @property
    def name(self) -> str:
        """The checkpoint's name."""
        return self._name

    @property
    def file(self) -> "File":
        """The File it is registered on."""
        return self._file

    @property
    def buffer(self) -> Buffer:
        """The registered region (the object given to register)."""
        return self._buffer

    @property
    def nbytes(self) -> int:
        """The region's size in bytes."""
        return ctypes.sizeof(self._array)

    def save(self) -> None:
        """Saves the region as a new version (the newest plus one; the first is 1).

        When it returns the version survives the death of the process; whether it
        survives a power loss depends on the sync= option. The GIL is released while
        the region is copied: do not write to it from another thread meanwhile.
        Raises FullError (max_size= reached), RemoteError (RestartError: the job
        went on without this rank, call File.restore_job), ClosedError, NotFoundError
        (unregistered), or Error with the system's errno (ENOSPC, ...); the newest
        version is then unchanged.
        """
        check(lib.ckpSave(self._handle))

    def restore(self, version: int = 0) -> None:
        """Copies a version into the region: 1..N absolute, 0 the newest, -1 the one
        before it, and so on. The version's hash is checked before any byte reaches
        the region: on any error the region is left as it was.

        Raises VersionError (no such version kept), SizeError (the version's size
        differs from the region's), CorruptError (damaged), RemoteError, ClosedError,
        NotFoundError. The GIL is released while it copies.
        """
        check(lib.ckpRestore(self._handle, _version(version)))

    def newest(self) -> int:
        """The newest kept version number, 0 if none was saved."""
        v = c_int()
        check(lib.ckpNewest(self._handle, byref(v)))
        return v.value

    def versions(self) -> List[int]:
        """The kept version numbers, oldest first."""
        n = c_int()
        cap = 0
        while True:
            buf = (c_int * max(cap, 1))()
            check(lib.ckpVersions(self._handle, buf, cap, byref(n)))
            if n.value <= cap:
                return list(buf[: n.value])
            cap = n.value + 16  # it grew meanwhile, or this was the count

    def unregister(self) -> None:
        """Unregisters the checkpoint (as File.unregister). Its versions stay in the
        file; the region is no longer held."""
        self._file.unregister(self._name)

    def __repr__(self) -> str:
        return f"<ckp.Checkpoint {self._name!r} of {self._file.path!r}, {self.nbytes} bytes>"


class File:
    """An open checkpoint file (ckp.open returns it); a context manager that closes it.

    Every method may be called from several threads. Methods that save or restore
    release the GIL while the library copies.
    """

    def __init__(self, path: PathLike, options: str = "") -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        self._ckpts: Dict[str, Checkpoint] = {}
        self._handle: Optional[int] = None
        h = c_void_p()
        check(lib.ckpOpen(_c_string("path", self._path), _c_string("options", options), byref(h)))
        self._handle = h.value

    # -- the file ---------------------------------------------------------------

    @property
    def path(self) -> str:
        """The data file's path (the index file is path + ".idx")."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._handle is None

    def _h(self) -> int:
        h = self._handle
        if h is None:
            raise ClosedError(9, f"ckp: file closed: {self._path}")
        return h

    def close(self) -> None:
        """Makes every saved version durable, unregisters every checkpoint (their
        regions are no longer held) and closes the file. With a remote tier it first
        waits, up to timeout=, for the queued uploads. The file is closed even when
        it raises (RemoteError or RestartError, or Error for a failed final flush).
        A second close does nothing."""
        with self._lock:
            h = self._handle
            if h is None:
                return
            self._handle = None
        st = lib.ckpClose(h)
        err = from_status(st) if st else None
        with self._lock:
            self._ckpts.clear()  # their handles stay refused (EBADF) by the library
        if err is not None:
            raise err

    def __enter__(self) -> "File":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_handle", None) is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._ckpts)} checkpoints"
        return f"<ckp.File {self._path!r}, {state}>"

    # -- regions -----------------------------------------------------------------

    def register(self, name: str, buffer: Buffer) -> Checkpoint:
        """Registers buffer's memory under name and returns its Checkpoint.

        buffer is any writable, C-contiguous buffer: a numpy array, a bytearray, a
        memoryview of one, an array.array, a torch CPU tensor (state_dict tensors
        included). It is held, and its memory must stay where it is, until
        unregister(name) or close(): a bytearray or numpy array cannot be resized in
        place meanwhile (BufferError). If the file holds versions saved under name
        before, in this process or another, the checkpoint picks them up.

        Raises InvalidArgumentError (a bad name: empty, over 255 bytes, a NUL; a
        read-only, non-contiguous or empty buffer), ExistsError, ClosedError.
        """
        if not isinstance(name, str):
            raise invalid(f"name {name!r} is not a str")
        cname = _c_string("name", name)
        array = _region(buffer)
        with self._lock:
            h = c_void_p()
            st = lib.ckpRegister(self._h(), cname, ctypes.addressof(array), ctypes.sizeof(array), byref(h))
            if st:
                raise from_status(st)
            c = Checkpoint(self, h.value, name, buffer, array)
            self._ckpts[name] = c
        return c

    def unregister(self, name: str) -> None:
        """Unregisters the checkpoint name. Its versions stay in the file (registering
        the name again picks them up); its region is no longer held. Raises
        NotFoundError, ClosedError."""
        with self._lock:
            c = self._locate(name)
            st = lib.ckpUnregister(c._handle)
            if st:
                raise from_status(st)
            del self._ckpts[name]  # the handle stays refused (ENOENT) by the library

    def _locate(self, name: str) -> Checkpoint:
        self._h()
        c = self._ckpts.get(name)
        if c is None:
            raise NotFoundError(2, f"ckp: checkpoint not found: no registered checkpoint {name!r}")
        return c

    def locate(self, name: str) -> Checkpoint:
        """Returns the checkpoint registered under name. Raises NotFoundError,
        ClosedError."""
        with self._lock:
            return self._locate(name)

    def __getitem__(self, name: str) -> Checkpoint:
        return self.locate(name)

    def __contains__(self, name: object) -> bool:
        return name in self._ckpts

    def names(self) -> List[str]:
        """The names registered, in the order they were registered."""
        with self._lock:
            return list(self._ckpts)

    # -- saving and restoring --------------------------------------------------------

    def save(self, name: str) -> None:
        """Saves the checkpoint name as a new version (see Checkpoint.save)."""
        self.locate(name).save()

    def save_all(self) -> None:
        """Saves every registered region as one new version each, atomically: after a
        crash at any instant, the newest versions of all regions come from the same
        save_all. With nothing registered it saves nothing.

        Raises FullError, RemoteError (RestartError: call restore_job), ClosedError,
        or Error with the system's errno; the newest versions are then unchanged. The GIL is released while it copies:
        do not write to the regions from other threads meanwhile.
        """
        check(lib.ckpSaveAll(self._h()))

    def restore(self, name: str, version: int = 0) -> None:
        """Restores a version of the checkpoint name (see Checkpoint.restore)."""
        self.locate(name).restore(version)

    def restore_all(self, version: int = 0) -> None:
        """Restores the same version (absolute, or 0 the newest, -1 the one before...)
        of every registered checkpoint. Every version is located and checked before any
        region is written: on any error no region is modified.

        In a job of several ranks (ranks= above 1) it also rewinds: later versions are
        dropped and the next save follows the one restored.

        Raises VersionError (nothing saved yet, or no such version), SizeError,
        CorruptError, RemoteError, ClosedError. The GIL is released while it copies.
        """
        check(lib.ckpRestoreAll(self._h(), _version(version)))

    def newest(self, name: str) -> int:
        """The newest kept version of the checkpoint name, 0 if none."""
        return self.locate(name).newest()

    def versions(self, name: str) -> List[int]:
        """The kept versions of the checkpoint name, oldest first."""
        return self.locate(name).versions()

    def sync(self) -> None:
        """Makes every version saved so far durable, whatever the sync= option."""
        check(lib.ckpSync(self._h()))

    # -- the remote tier ---------------------------------------------------------------

    def flush(self) -> None:
        """Waits until every version saved so far (that every= uploads) is committed in
        the remote store; returns at once without a remote tier. Raises RemoteError
        (an upload failed, or timeout= passed), RestartError (the job went on without
        this rank: call restore_job)."""
        check(lib.ckpFlush(self._h()))

    def job_version(self) -> int:
        """The job version, the restart point of the job's newest life: the newest
        version complete on every rank in it (committed in the store for every
        checkpoint registered there), else the version the life began from; 0 if none.
        Raises InvalidArgumentError without a remote tier, RemoteError."""
        v = c_int()
        check(lib.ckpJobVersion(self._h(), byref(v)))
        return v.value

    def job_life(self) -> JobLife:
        """The job's newest life and its restart point, as JobLife(life, version):
        life 0 when no rank has joined the job yet; version as job_version(). Reads the
        store and changes nothing. Raises InvalidArgumentError without a remote tier,
        RemoteError."""
        life, v = c_int(), c_int()
        check(lib.ckpJobLife(self._h(), byref(life), byref(v)))
        return JobLife(life.value, v.value)

    def restore_job(self) -> int:
        """Restarts this rank of a job: joins the job's current life, restores every
        registered checkpoint at the job version and rewinds to it, or starts over
        (dropping every version, leaving the regions as they are) when there is none.
        Returns the version restored, 0 for a fresh start.

        Call it on every rank after registering and before the first save (in a job
        of several ranks that has a job version, a save without it raises
        RestartError), and again after a RestartError. Raises InvalidArgumentError
        without a remote tier, SizeError, CorruptError (also for a checkpoint
        registered that was not saved at the job version), RemoteError; on error no
        region is modified."""
        v = c_int()
        check(lib.ckpRestoreJob(self._h(), byref(v)))
        return v.value


def open(
    path: PathLike,
    *,
    sync: Optional[str] = None,
    keep: Optional[int] = None,
    workers: Optional[int] = None,
    max_size: Optional[int] = None,
    differential: Optional[bool] = None,
    block_size: Optional[int] = None,
    remote: Optional[PathLike] = None,
    endpoint: Optional[str] = None,
    insecure: Optional[bool] = None,
    region: Optional[str] = None,
    rank: Optional[int] = None,
    ranks: Optional[int] = None,
    every: Optional[int] = None,
    keep_remote: Optional[int] = None,
    max_pending: Optional[int] = None,
    timeout: Optional[Union[str, float]] = None,
    launch: Optional[str] = None,
    options: Optional[str] = None,
) -> File:
    """Opens the checkpoint file at path, creating it (and its index, path + ".idx")
    if it does not exist; a torn tail left by a crash is dropped.

        with ckp.open("run.ckp", sync="every:10", keep=3) as f:
            f.register("grid", grid)
            ...

    The settings are ckpOpen's options (capi/ckp_util.h); None leaves the default:

    sync          "none" (default), "async", "always", "every:N", "interval:DURATION"
                  ("500ms", "2s"): when saves become durable (survive a power loss)
    keep          keep the newest K versions of each checkpoint (0: every version)
    workers       threads copying one large save or restore (default: GOMAXPROCS)
    max_size      the data file's largest size in bytes (a save past it: FullError)
    differential  save only the blocks changed since the previous version
    block_size    the block of differential saves (4096 .. 2097152, a power of two)
    remote        the remote tier's store: a directory (shared by the ranks of a
                  job) or "s3://bucket/prefix"; with endpoint=, insecure=, region=
                  for S3 (keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)
    rank, ranks   this process is rank R of a job of N ranks
    every         upload every N-th version
    keep_remote   versions kept in the store
    max_pending   bytes that may wait for upload before a save waits
    timeout       how long a call waits for the store: seconds, or "2m"
    launch        the id of this launch of the job (at most 256 bytes), the same on
                  every rank started together and another at each restart (e.g.
                  f"{os.environ['SLURM_JOB_ID']}.{os.environ['SLURM_RESTART_COUNT']}",
                  or random bytes rank 0 broadcasts, as hex): a process of an earlier
                  launch still running then gets RestartError instead of mixing in
    options       a raw options string ("sync=always keep=2"), before the above

    Raises InvalidArgumentError (a bad option, named in the message), LockedError
    (another writer holds the file), CorruptError (not a ckp file; left untouched),
    RemoteError, or Error with the system's errno (ENOENT for a missing directory,
    EACCES, ...).
    """
    s = options_string(
        options,
        sync=sync,
        keep=keep,
        workers=workers,
        max_size=max_size,
        differential=differential,
        block_size=block_size,
        remote=remote,
        endpoint=endpoint,
        insecure=insecure,
        region=region,
        rank=rank,
        ranks=ranks,
        every=every,
        keep_remote=keep_remote,
        max_pending=max_pending,
        timeout=timeout,
        launch=launch,
    )
    return File(path, s)
