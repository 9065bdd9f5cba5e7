"""compare times ckp's save_all and restore_all of a numpy state against what a Python
program would otherwise write, in one run on this machine, and prints the ratios.

    /usr/bin/python3 python/bench/compare.py            # 64 MiB in 4 arrays, 7 rounds
    /usr/bin/python3 python/bench/compare.py --size-mib 256 --rounds 5 --json

Saves: ckp save_all (sync=none, keep=2: the steady state of a loop that keeps two
versions) against np.save of each array to its file (overwritten each time), and
torch.save of the same arrays as tensors (torch.from_numpy: no copy) to one file; ckp
save_all with sync=always against np.save followed by fsync of each file. Restores:
ckp restore_all into the registered arrays against np.load of the files and
torch.load of the file; and a restart: a new interpreter's ckp.open + register of
fresh arrays + restore_all against its np.load of the files. Every variant runs once per round, the rounds interleaved so
that each sees the machine in the same moods; the table has the median time per
operation and, per baseline, the ratio baseline time / ckp time with its median and
range over the rounds. Goals: save >= 3x np.save and >= 5x torch.save, restore >= 1x
np.load.

Run with the interpreter that has numpy and torch (Debian's /usr/bin/python3) and the
package installed, or CKP_LIBRARY and PYTHONPATH=python/src set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

import ckp

try:
    import torch
except ImportError:  # the torch rows are left out
    torch = None


def timed(fn: Callable[[], object], reps: int) -> float:
    """The median wall time of reps calls of fn, in seconds."""
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def restart(kind: str, d: str, names: List[str], n: int) -> float:
    """Runs a new interpreter that restores the state the way a restarted program
    does (fresh arrays: new memory, first touched by the restore) and returns the
    time it took, from before the open to after the last byte: ckp.open, register,
    restore_all; or np.load of each file. The program would carry on from there:
    ckp's close comes after the timing."""
    code = f"""
import sys, time, numpy as np
import ckp
names, n, d = {names!r}, {n}, {d!r}
t0 = time.perf_counter()
if {kind!r} == "ckp":
    arrays = [np.empty(n) for _ in names]
    f = ckp.open(d + "/restart.ckp")
    for k, a in zip(names, arrays):
        f.register(k, a)
    f.restore_all()
else:
    arrays = [np.load(d + "/" + k + ".npy") for k in names]
print(time.perf_counter() - t0)  # the program carries on from here (the close is not timed)
if {kind!r} == "ckp":
    f.close()
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=64, help="the state's size in MiB (default 64)")
    p.add_argument("--arrays", type=int, default=4, help="arrays the state is made of (default 4)")
    p.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    p.add_argument("--reps", type=int, default=3, help="operations per variant per round; the median counts (default 3)")
    p.add_argument("--dir", help="directory for the files (default: a temporary one in the current directory)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)

    n = a.size_mib * (1 << 20) // 8 // a.arrays
    rng = np.random.default_rng(1)
    state = {f"a{i}": rng.random(n) for i in range(a.arrays)}
    tmp = tempfile.TemporaryDirectory(prefix="ckp-compare-", dir=a.dir or os.getcwd())
    d = tmp.name

    f_none = ckp.open(os.path.join(d, "none.ckp"), keep=2)
    f_always = ckp.open(os.path.join(d, "always.ckp"), keep=2, sync="always")
    for f in (f_none, f_always):
        for k, v in state.items():
            f.register(k, v)
        for _ in range(3):  # both slots of keep=2 exist: the steady state
            f.save_all()
    files = {k: os.path.join(d, k + ".npy") for k in state}
    tfile = os.path.join(d, "state.pt")
    tstate = {k: torch.from_numpy(v) for k, v in state.items()} if torch else None

    def np_save() -> None:
        for k, v in state.items():
            np.save(files[k], v)

    def np_save_fsync() -> None:
        for k, v in state.items():
            with open(files[k], "wb") as fh:
                np.save(fh, v)
                fh.flush()
                os.fsync(fh.fileno())

    def np_load() -> None:
        for k in state:
            np.load(files[k])

    ops: Dict[str, Callable[[], object]] = {
        "ckp save_all": f_none.save_all,
        "np.save": np_save,
        "ckp save_all sync=always": f_always.save_all,
        "np.save+fsync": np_save_fsync,
        "ckp restore_all": f_none.restore_all,
        "np.load": np_load,
    }
    if torch:
        ops["torch.save"] = lambda: torch.save(tstate, tfile)
        ops["torch.load"] = lambda: torch.load(tfile)
    # Each baseline against the ckp operation it replaces.
    pairs = [("np.save", "ckp save_all", 3.0), ("np.save+fsync", "ckp save_all sync=always", None),
             ("torch.save", "ckp save_all", 5.0), ("np.load", "ckp restore_all", 1.0),
             ("torch.load", "ckp restore_all", None)]
    pairs = [pr for pr in pairs if pr[0] in ops]

    np_save()  # the files exist before the loads
    if torch:
        torch.save(tstate, tfile)
    with ckp.open(os.path.join(d, "restart.ckp")) as f:  # what the restarts restore
        for k, v in state.items():
            f.register(k, v)
        f.save_all()
    names = list(state)
    ops["ckp open+restore_all, new process"] = lambda: restart("ckp", d, names, n)
    ops["np.load, new process"] = lambda: restart("np", d, names, n)
    pairs.append(("np.load, new process", "ckp open+restore_all, new process", 1.0))
    times: Dict[str, List[float]] = {k: [] for k in ops}
    for r in range(a.rounds):
        for name, fn in ops.items():
            if name.endswith("new process"):
                times[name].append(statistics.median(fn() for _ in range(a.reps)))  # type: ignore[misc]
            else:
                times[name].append(timed(fn, a.reps))
        print(f"round {r + 1}/{a.rounds}", file=sys.stderr)
    f_none.close()
    f_always.close()
    tmp.cleanup()

    size = a.size_mib << 20
    rows = []
    for base, mine, goal in pairs:
        ratios = [b / m for b, m in zip(times[base], times[mine])]
        rows.append({"baseline": base, "ckp": mine, "median": statistics.median(ratios), "min": min(ratios),
                     "max": max(ratios), "goal": goal,
                     "met": None if goal is None else statistics.median(ratios) >= goal})
    result = {
        "size_bytes": size, "arrays": a.arrays, "rounds": a.rounds, "reps": a.reps,
        "python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__ if torch else None,
        "ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
        "ratios": rows,
    }
    if a.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"{a.size_mib} MiB in {a.arrays} arrays, {a.rounds} rounds of {a.reps}; median ms per operation, MB/s")
    for k, v in result["ms"].items():
        print(f"  {k:36s} {v:9.2f} ms  {size / (v / 1e3) / 1e6:9.0f} MB/s")
    print("ratios, baseline time / ckp time: median (range over rounds)")
    for row in rows:
        goal = "" if row["goal"] is None else f"  goal >= {row['goal']:g}x: {'met' if row['met'] else 'MISSED'}"
        print(f"  {row['ckp']:36s} vs {row['baseline']:22s} {row['median']:6.2f}x ({row['min']:.2f}-{row['max']:.2f}){goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
