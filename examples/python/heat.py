"""heat solves the 2-D heat equation on a square plate with an explicit finite
difference scheme, in numpy, and checkpoints its state with ckp every few steps.
Killed at any moment (kill -9 included) and started again with the same arguments, it
resumes from the newest checkpoint and finishes with exactly the answer of an
uninterrupted run (examples/c/heat.c and examples/heat are the same program in C and
Go, and give the same answer).

    python3 examples/python/heat.py --ckpt /tmp/heat.ckp -n 256 --steps 5000 --every 100

The grid and the step counter are saved together with save_all, so a restart never
sees a grid from one step with the counter of another.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import ckp


def initial(n: int) -> np.ndarray:
    """A hot square in the middle of a cold plate with a warm left edge."""
    g = np.zeros((n, n))
    g[n // 3 + 1 : 2 * n // 3, n // 3 + 1 : 2 * n // 3] = 100
    g[:, 0] = 50
    return g


def step(dst: np.ndarray, src: np.ndarray, alpha: float, scratch: np.ndarray) -> None:
    """One explicit time step: interior points move towards the mean of their four
    neighbours; the edges stay fixed. The same operations in the same order as
    heat.c, so the answers agree to the bit. scratch holds two arrays of the
    interior's shape (no allocation per step)."""
    lap, tmp = scratch
    dst[...] = src
    c = src[1:-1, 1:-1]
    np.add(src[1:-1, :-2], src[1:-1, 2:], out=lap)
    lap += src[:-2, 1:-1]
    lap += src[2:, 1:-1]
    np.multiply(c, 4, out=tmp)
    lap -= tmp
    lap *= alpha
    np.add(c, lap, out=dst[1:-1, 1:-1])


def scratch_for(a: np.ndarray) -> np.ndarray:
    """The scratch space step needs for grids of a's shape."""
    return np.empty((2, a.shape[0] - 2, a.shape[1] - 2))


def fnv1a(b: bytes) -> int:
    """The FNV-1a hash of b: heat.c's fingerprint of the answer."""
    h = 14695981039346656037
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="heat.ckp", help="checkpoint file")
    p.add_argument("-n", type=int, default=128, help="grid points per side")
    p.add_argument("--steps", type=int, default=2000, help="time steps to run in all")
    p.add_argument("--every", type=int, default=50, help="checkpoint every this many steps")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (0 = all)")
    p.add_argument("--sync", action="store_true", help="make every checkpoint durable (sync=always)")
    p.add_argument("--out", help="write the final grid's bytes to this file")
    a = p.parse_args(argv)
    if a.n < 3 or a.steps < 0 or a.every < 1 or a.keep < 0:
        p.error("need -n >= 3, --steps >= 0, --every >= 1, --keep >= 0")

    grid = initial(a.n)
    nxt = np.empty_like(grid)
    scratch = scratch_for(grid)
    # The solver's position: saved with the grid in the same save_all.
    progress = np.array([0, a.n], dtype=np.int64)  # step, n
    alpha = 0.2
    with ckp.open(a.ckpt, keep=a.keep, sync="always" if a.sync else "none") as f:
        # The regions stay registered (and held) until the file is closed.
        f.register("grid", grid)
        f.register("progress", progress)
        if f.newest("progress") > 0:
            f.restore_all()
            if progress[1] != a.n:
                print(f"heat: checkpoint is for n={progress[1]}, not {a.n}", file=sys.stderr)
                return 1
            print(f"resumed at step {progress[0]}", flush=True)
        while progress[0] < a.steps:
            step(nxt, grid, alpha, scratch)
            grid[...] = nxt  # grid is the registered region
            progress[0] += 1
            if progress[0] % a.every == 0 or progress[0] == a.steps:
                f.save_all()
                print(f"checkpoint at step {progress[0]}", flush=True)
    if a.out:
        with open(a.out, "wb") as o:
            o.write(grid.tobytes())
    centre = grid[a.n // 2, a.n // 2]
    print(f"done: step {progress[0]}, checksum {fnv1a(grid.tobytes()):016x}, centre {centre:.12g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
