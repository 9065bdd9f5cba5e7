"""The GIL is released while the library saves and restores: another Python thread
runs meanwhile. The same calls made with the GIL held (the library loaded through
ctypes.PyDLL) let it run not at all, which shows the test can fail."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List

import ckp
from ckp._lib import library_path


def ticks_during(call: Callable[[], int], rounds: int = 5, least: float = 0.1) -> List[int]:
    """Runs call again and again, rounds times for at least least seconds each, while a
    thread records the time in a loop, and returns, per round, how many records fall
    within the round.

    A round lasts long (a restore alone can take 2 ms) so that a busy machine, which
    may take milliseconds to wake the recorder when the GIL is released, still lets
    it run within the round. Between two calls of a round this thread runs Python
    code but, with the switch interval below, never hands the GIL over there.

    The switch interval is made so long that this thread never hands the GIL over
    between bytecodes: the recorder runs only while this thread waits (in sleep, or
    in a call that released the GIL), and it gives the GIL back after each record."""
    stamps: List[float] = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0)  # releases the GIL

    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    t = threading.Thread(target=tick)
    t.start()
    counts = []
    try:
        for _ in range(rounds):
            time.sleep(0.005)
            t0 = time.perf_counter()
            t1 = t0
            while t1 - t0 < least:
                assert call() == 0
                t1 = time.perf_counter()
            counts.append(sum(1 for s in list(stamps) if t0 < s < t1))
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)
    return counts


def test_gil_released_during_save_and_restore(path: Path) -> None:
    region = bytearray(b"\x5a" * (64 << 20))
    with ckp.open(path, keep=2, workers=1) as f:
        f.register("r", region)
        f.save_all()
        held = ctypes.PyDLL(library_path())  # the same library, called with the GIL held
        held.ckpSaveAll.argtypes = [ctypes.c_void_p]
        held.ckpRestoreAll.argtypes = [ctypes.c_void_p, ctypes.c_int]
        h = f._h()

        from ckp._lib import lib

        free_save = ticks_during(lambda: lib.ckpSaveAll(h))
        free_restore = ticks_during(lambda: lib.ckpRestoreAll(h, 0))
        held_save = ticks_during(lambda: held.ckpSaveAll(h))
        held_restore = ticks_during(lambda: held.ckpRestoreAll(h, 0))
    # Released: the other thread ran during the calls (once is proof: with the GIL
    # held it cannot run at all). Held: never.
    assert any(c > 0 for c in free_save), free_save
    assert any(c > 0 for c in free_restore), free_restore
    assert held_save == [0] * 5 and held_restore == [0] * 5, (held_save, held_restore)
