"""heat_mpi solves the heat equation of heat.py on several MPI ranks (mpi4py) and
checkpoints with ckp's remote tier: each rank owns a strip of rows and its own local
checkpoint file (CKPT.rankR), and copies its versions in the background to a store
every rank can reach (a shared directory, or s3://bucket/prefix), as rank R of a job
of N ranks. Killed at any moment (every rank with kill -9, as when nodes die), even
with a rank's local files lost, and started again with the same arguments, the ranks
agree on the restart step without talking: restore_job() puts every rank at the job
version (the newest version every rank committed in the store) and rewinds to it.
It finishes with exactly the answer of the serial heat.py.

    mpirun -n 4 python3 examples/python/heat_mpi.py --ckpt /tmp/heat.ckp \\
        --remote /shared/heat -n 256 --steps 5000 --every 100

For the tests: --pids DIR makes each rank write its process id to DIR/rankR.pid, and
--progress FILE makes rank 0 append its "checkpoint" lines to FILE as they happen
(mpirun forwards standard output late).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from mpi4py import MPI

import ckp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heat import fnv1a, initial, scratch_for, step  # noqa: E402  (the serial program's pieces)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="heat.ckp", help="local checkpoint file (each rank adds .rankR)")
    p.add_argument("--remote", required=True, help="the store: a directory every rank reaches, or s3://bucket/prefix")
    p.add_argument("-n", type=int, default=128, help="grid points per side")
    p.add_argument("--steps", type=int, default=2000, help="time steps to run in all")
    p.add_argument("--every", type=int, default=50, help="checkpoint every this many steps")
    p.add_argument("--keep", type=int, default=2, help="versions kept locally")
    p.add_argument("--pids", help="write each rank's process id to DIR/rankR.pid")
    p.add_argument("--progress", help="rank 0 appends its checkpoint lines to this file")
    a = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if a.n < size + 2 or a.steps < 0 or a.every < 1:
        p.error("need -n >= ranks + 2, --steps >= 0, --every >= 1")
    if a.pids:
        with open(os.path.join(a.pids, f"rank{rank}.pid"), "w") as pf:
            pf.write(f"{os.getpid()}\n")

    # Rank r owns rows lo..hi-1 of the n x n grid, with a ghost row above and below.
    counts = [a.n // size + (1 if r < a.n % size else 0) for r in range(size)]
    lo = sum(counts[:rank])
    hi = lo + counts[rank]
    full = initial(a.n)
    local = np.zeros((counts[rank] + 2, a.n))
    local[1:-1] = full[lo:hi]
    nxt = np.empty_like(local)
    scratch = scratch_for(local)
    progress = np.array([0, a.n], dtype=np.int64)  # step, n
    up, down = rank - 1 if rank > 0 else MPI.PROC_NULL, rank + 1 if rank < size - 1 else MPI.PROC_NULL

    def say(line: str) -> None:
        if rank == 0:
            print(line, flush=True)
            if a.progress:
                with open(a.progress, "a") as pf:
                    pf.write(line + "\n")

    # Each start of the job is a launch of its own: random bytes rank 0 sends to every
    # rank, so that a rank of an earlier start still running can never mix into this one.
    launch = comm.bcast(os.urandom(8).hex() if rank == 0 else None, root=0)
    f = ckp.open(f"{a.ckpt}.rank{rank}", keep=a.keep, remote=a.remote, rank=rank, ranks=size, launch=launch)
    with f:
        f.register("strip", local[1:-1])  # the owned rows: a C-contiguous view
        f.register("progress", progress)
        v = f.restore_job()  # every rank at the job version, or all start over
        if v > 0:
            if progress[1] != a.n:
                print(f"heat_mpi: checkpoint is for n={progress[1]}, not {a.n}", file=sys.stderr)
                comm.Abort(1)
            say(f"resumed at step {progress[0]} (version {v})")
        comm.Barrier()  # no rank saves before every rank has restored
        while progress[0] < a.steps:
            comm.Sendrecv(local[1], dest=up, recvbuf=local[-1], source=down)
            comm.Sendrecv(local[-2], dest=down, recvbuf=local[0], source=up)
            step(nxt, local, 0.2, scratch)
            # The plate's top and bottom rows stay fixed, like its edges.
            first = 1 if rank > 0 else 2
            last = local.shape[0] - 1 if rank < size - 1 else local.shape[0] - 2
            local[first:last] = nxt[first:last]
            progress[0] += 1
            if progress[0] % a.every == 0 or progress[0] == a.steps:
                f.save_all()
                say(f"checkpoint at step {progress[0]}")
        f.flush()  # everything this rank saved is committed in the store
        comm.Barrier()  # and every other rank's
        job = f.job_version()
    grid = comm.gather(local[1:-1].copy(), root=0)
    if rank == 0:
        g = np.concatenate(grid)
        centre = g[a.n // 2, a.n // 2]
        print(f"job version {job}", flush=True)
        print(f"done: step {progress[0]}, checksum {fnv1a(g.tobytes()):016x}, centre {centre:.12g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
