"""ckp: checkpoints for long-running programs, from Python.

A program registers named regions of its memory (numpy arrays, bytearrays, torch CPU
tensors: any writable, C-contiguous buffer) on a checkpoint file, saves them as
numbered versions many times a second, and after a crash (kill -9 included) restores
any version and carries on. Each version carries a hash that is checked before any
byte is restored; save_all saves every region atomically.

    import numpy as np, ckp

    grid = np.zeros((512, 512))
    step = np.zeros(1, dtype=np.int64)
    with ckp.open("run.ckp", sync="every:10", keep=3) as f:
        f.register("grid", grid)
        f.register("step", step)
        try:
            f.restore_all()              # the newest version of both
        except ckp.VersionError:
            pass                         # nothing saved yet: start from scratch
        while step[0] < 10_000:
            compute(grid)
            step[0] += 1
            if step[0] % 100 == 0:
                f.save_all()

The package is a thin layer over the C library libckp (capi/ckp_util.h in the ckp
source tree), loaded with ctypes; every call of the library releases the GIL. Errors
raise a subclass of ckp.Error (an OSError) per status code, carrying the library's
message. `python -m ckp ls FILE` and `python -m ckp verify FILE` run the ckp command.

With a remote tier (remote=, rank=, ranks=, launch=), every rank calls
File.restore_job after registering and before its first save; File.job_life tells
the job's newest life and its restart point; a rank the job went on without gets
RestartError and calls restore_job again.
"""

from ._errors import (
    EREMOTEIO,
    ERESTART,
    ClosedError,
    CorruptError,
    Error,
    ExistsError,
    FullError,
    InvalidArgumentError,
    LockedError,
    NotFoundError,
    RemoteError,
    RestartError,
    SizeError,
    VersionError,
    error_class,
)
from ._file import Buffer, Checkpoint, File, JobLife, PathLike, open, options_string
from ._lib import library_path

__all__ = [
    "open",
    "File",
    "Checkpoint",
    "JobLife",
    "Buffer",
    "PathLike",
    "options_string",
    "library_path",
    "error_class",
    "EREMOTEIO",
    "ERESTART",
    "Error",
    "InvalidArgumentError",
    "NotFoundError",
    "ExistsError",
    "VersionError",
    "SizeError",
    "ClosedError",
    "LockedError",
    "CorruptError",
    "FullError",
    "RemoteError",
    "RestartError",
]
