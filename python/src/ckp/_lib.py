"""Loads libckp with ctypes and declares the functions of capi/ckp_util.h.

The library is the one built into the package (libckp.so beside this file), or the
one the environment variable CKP_LIBRARY names (the tests use it to run the package
from the source tree). It is loaded with ctypes.CDLL, which releases the GIL for the
duration of every call: other Python threads run while a save or a restore copies.

Loading it starts a Go runtime in the process. Its rules (capi/ckp_util.h, RUNTIME
RULES) apply to the interpreter: no fork() without exec() once it is loaded (with
multiprocessing, use the "spawn" or "forkserver" start method), and GOMAXPROCS is
read when it loads.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import POINTER, c_char_p, c_int, c_size_t, c_void_p
from pathlib import Path

LIBRARY_ENV = "CKP_LIBRARY"


def library_path() -> str:
    """Returns the path of the libckp this package loads."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    name = "libckp.dylib" if sys.platform == "darwin" else "libckp.so"
    p = Path(__file__).resolve().parent / name
    if not p.exists():
        raise ImportError(
            f"ckp: {p} is missing: install the package with "
            f"`python3 -m pip install --no-build-isolation ./python` from the ckp source tree, "
            f"or set {LIBRARY_ENV} to a libckp built with `go build -buildmode=c-shared ./capi`"
        )
    return str(p)


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(library_path())
    handle = c_void_p
    sigs = {
        "ckpOpen": ([c_char_p, c_char_p, POINTER(handle)], c_int),
        "ckpClose": ([handle], c_int),
        "ckpLocate": ([handle, c_char_p], handle),
        "ckpRegister": ([handle, c_char_p, c_void_p, c_size_t, POINTER(handle)], c_int),
        "ckpUnregister": ([handle], c_int),
        "ckpSave": ([handle], c_int),
        "ckpSaveAll": ([handle], c_int),
        "ckpRestore": ([handle, c_int], c_int),
        "ckpRestoreAll": ([handle, c_int], c_int),
        "ckpSync": ([handle], c_int),
        "ckpNewest": ([handle, POINTER(c_int)], c_int),
        "ckpVersions": ([handle, POINTER(c_int), c_int, POINTER(c_int)], c_int),
        "ckpFlush": ([handle], c_int),
        "ckpJobVersion": ([handle, POINTER(c_int)], c_int),
        "ckpJobLife": ([handle, POINTER(c_int), POINTER(c_int)], c_int),
        "ckpRestoreJob": ([handle, POINTER(c_int)], c_int),
        "ckpStrerror": ([c_int], c_char_p),
        "ckpLastError": ([], c_char_p),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = res
    return lib


lib = _load()
