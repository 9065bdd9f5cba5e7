"""The exceptions: one class per status code of the C library.

Every class derives from Error, itself an OSError: errno is the status (an errno
value), strerror and str() are the library's full message for the failed call
("ckp: no such version: ..."), as ckpLastError gives it.
"""

from __future__ import annotations

import errno as _errno
from typing import Dict, Type

from ._lib import lib

#: Linux's EREMOTEIO (121); other systems report a remote failure as EIO.
EREMOTEIO = getattr(_errno, "EREMOTEIO", 121)

#: Linux's ERESTART (85): the job went on without this rank. Other systems report it as
#: EIO (the message says to call restore_job).
ERESTART = getattr(_errno, "ERESTART", 85)


class Error(OSError):
    """A failure of the ckp library. errno is its status code and str() its message.

    A status without a class of its own (an operating-system error such as ENOSPC,
    EACCES or ENOTDIR) raises Error itself, with that errno.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)

    @property
    def status(self) -> int:
        """The status code the C function returned (an errno value)."""
        return self.errno

    @property
    def message(self) -> str:
        """The library's message for the failed call."""
        return self.strerror

    def __str__(self) -> str:
        return self.strerror


class InvalidArgumentError(Error, ValueError):
    """EINVAL: a bad argument (a bad name, region or option; a save on a read-only
    file; a remote call on a file without a remote tier)."""


class NotFoundError(Error):
    """ENOENT: no checkpoint registered under that name (or, from open, a missing
    directory)."""


class ExistsError(Error):
    """EEXIST: a checkpoint of that name is already registered on the file."""


class VersionError(Error):
    """ERANGE: no such version is kept (never saved, dropped by keep=, or out of the
    relative range)."""


class SizeError(Error):
    """EMSGSIZE: the saved version's size differs from the registered region's."""


class ClosedError(Error):
    """EBADF: the file was closed."""


class LockedError(Error):
    """EWOULDBLOCK: another writer, in this process or another, holds the file."""


class CorruptError(Error):
    """EIO: not a ckp file, or a version's bytes do not match their hash (damaged data
    is never handed back)."""


class FullError(Error):
    """EFBIG: the save would grow the data file past max_size; nothing was saved."""


class RemoteError(Error):
    """EREMOTEIO: the remote tier failed (unreachable within timeout, access denied,
    an upload failed). The local file is never affected."""


class RestartError(RemoteError):
    """ERESTART: the job went on without this rank (another rank restarted after
    versions completed, a process of a newer launch took over, or this rank saved
    without restore_job). Nothing it uploads counts any more: call File.restore_job
    to rejoin the job. Raised by save, save_all, flush and close; the local file keeps
    every version."""


_CLASSES: Dict[int, Type[Error]] = {
    _errno.EINVAL: InvalidArgumentError,
    _errno.ENOENT: NotFoundError,
    _errno.EEXIST: ExistsError,
    _errno.ERANGE: VersionError,
    _errno.EMSGSIZE: SizeError,
    _errno.EBADF: ClosedError,
    _errno.EWOULDBLOCK: LockedError,
    _errno.EIO: CorruptError,
    _errno.EFBIG: FullError,
    EREMOTEIO: RemoteError,
    ERESTART: RestartError,
}


def error_class(status: int) -> Type[Error]:
    """Returns the exception class of a status code."""
    return _CLASSES.get(status, Error)


def from_status(status: int) -> Error:
    """Returns the exception of a failed call's status, with the calling thread's last
    error message (call it right after the failed call, on the same thread)."""
    raw = lib.ckpLastError()
    msg = raw.decode("utf-8", "replace") if raw else ""
    if not msg:
        msg = (lib.ckpStrerror(status) or b"ckp: error").decode("utf-8", "replace")
    return error_class(status)(status, msg)


def check(status: int) -> None:
    """Raises the exception of status unless it is 0."""
    if status != 0:
        raise from_status(status)


def invalid(message: str) -> InvalidArgumentError:
    """An EINVAL raised by the Python side, before any call into the library."""
    return InvalidArgumentError(_errno.EINVAL, "ckp: invalid argument: " + message)
