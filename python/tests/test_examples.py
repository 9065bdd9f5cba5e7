"""The examples in examples/python, killed with SIGKILL at random moments and started
again, end with exactly the answer of an uninterrupted run: the numpy heat solver,
the torch training loop, and the mpi4py heat solver on 4 ranks, restarted through the
remote tier with one rank's local files lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import pytest

from conftest import EXAMPLES, need, need_tool


def run(args: List[str], **kw) -> List[str]:
    p = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout.strip().splitlines()


def kill_loop(start: Callable[[], subprocess.Popen], kills: int, max_after: int, rng: random.Random,
              kill: Optional[Callable[[subprocess.Popen], None]] = None,
              progress: Optional[Path] = None) -> Tuple[List[str], int, int]:
    """Starts the program again and again, killing each run after a random number (1 to
    max_after) of "checkpoint" lines plus a random delay, until kills runs were killed;
    then lets one run finish. The lines are read from the program's output or, with
    progress, from that file (mpirun forwards output late). Returns the finished run's
    lines, the kills and the runs that said "resumed"."""
    killed = resumed = 0
    for _ in range(4 * kills + 4):
        if progress is not None and progress.exists():
            progress.unlink()
        p = start()
        after = rng.randint(1, max_after) if killed < kills else -1
        seen, was_killed = 0, False
        lines: List[str] = []
        if progress is None:
            assert p.stdout is not None
            for line in p.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("checkpoint"):
                    seen += 1
                    if seen == after:
                        time.sleep(rng.random() * 0.003)
                        (kill or (lambda q: q.send_signal(signal.SIGKILL)))(p)
                        was_killed = True
                        break
            lines += p.stdout.read().splitlines()
        else:
            off = 0
            while p.poll() is None and not was_killed:
                time.sleep(0.001)
                if progress.exists():
                    text = progress.read_text()
                    for line in text[off:].splitlines(keepends=True):
                        if not line.endswith("\n"):
                            break
                        off += len(line)
                        if line.startswith("checkpoint"):
                            seen += 1
                            if seen == after:
                                time.sleep(rng.random() * 0.003)
                                assert kill is not None
                                kill(p)
                                was_killed = True
                                break
            out, _ = p.communicate(timeout=300)
            lines = out.splitlines()
        rc = p.wait(timeout=300)
        if any(l.startswith("resumed") for l in lines):
            resumed += 1
        if rc == 0 and lines and lines[-1].startswith("done"):
            return lines, killed, resumed
        assert was_killed, f"a run failed (exit {rc}) without being killed:\n" + "\n".join(lines)
        killed += 1
    pytest.fail(f"no run finished in {4 * kills + 4} runs")


def resumes_after_kill(tmp_path: Path, script: str, args: List[str], kills: int, max_after: int) -> None:
    """Runs script once uninterrupted, then under kill_loop, and compares their last
    lines (the answer)."""
    cmd = [sys.executable, str(EXAMPLES / script)]
    want = run([*cmd, "--ckpt", str(tmp_path / "ref.ckp"), *args])[-1]
    assert want.startswith("done: step ")
    lines, killed, resumed = kill_loop(
        lambda: subprocess.Popen([*cmd, "--ckpt", str(tmp_path / "k.ckp"), *args], stdout=subprocess.PIPE, text=True),
        kills=kills, max_after=max_after, rng=random.Random())
    assert lines[-1] == want
    assert killed == kills and resumed >= kills


def test_heat_resumes_after_kill(tmp_path: Path) -> None:
    need("numpy")
    resumes_after_kill(tmp_path, "heat.py", ["-n", "128", "--steps", "3000", "--every", "15"], kills=3, max_after=40)


def test_torch_resumes_after_kill(tmp_path: Path) -> None:
    need("torch")
    need("numpy")
    # 40 checkpoints: two kills after at most 15 each always leave a run to kill (at
    # most 20 each could reach the last checkpoint, and the second run then finished
    # before its kill, failing one run in a few hundred).
    resumes_after_kill(tmp_path, "train_torch.py", ["--steps", "400", "--every", "10"], kills=2, max_after=15)


RANKS = 4


def test_mpi_restart_job_from_store(tmp_path: Path) -> None:
    """4 ranks, killed together (as when their nodes die) at random moments; before
    each restart one rank's local files are deleted, so it restarts from the store."""
    need("numpy")
    need("mpi4py")
    mpirun = need_tool("mpirun")
    args = ["-n", "128", "--steps", "1500", "--every", "25"]
    want = run([sys.executable, str(EXAMPLES / "heat.py"), "--ckpt", str(tmp_path / "serial.ckp"), *args])[-1]

    ompi_tmp = tmp_path / "ompi"
    ompi_tmp.mkdir()
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_orte_tmpdir_base=str(ompi_tmp), TMPDIR=str(ompi_tmp))
    forward = [a for v in ("CKP_LIBRARY", "CKP_COMMAND", "PYTHONPATH") if v in env for a in ("-x", v)]
    progress = tmp_path / "progress"
    ckpt = tmp_path / "heat.ckp"
    rng = random.Random()
    lost: List[int] = []

    def start() -> subprocess.Popen:
        for f in pids.iterdir():
            f.unlink()
        if lost:  # a rank restarted on a node without its local files
            for suffix in ("", ".idx"):
                p = Path(f"{ckpt}.rank{lost[-1]}{suffix}")
                if p.exists():
                    p.unlink()
        return subprocess.Popen(
            [mpirun, "--oversubscribe", "--bind-to", "none", "-n", str(RANKS), "--mca", "pml", "ob1",
             "--mca", "btl", "self,vader", "--mca", "btl_vader_single_copy_mechanism", "none",
             "--mca", "btl_vader_backing_directory", str(ompi_tmp), *forward,
             sys.executable, str(EXAMPLES / "heat_mpi.py"), "--ckpt", str(ckpt), "--remote", str(tmp_path / "store"),
             "--pids", str(pids), "--progress", str(progress), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)

    def kill(p: subprocess.Popen) -> None:
        for f in pids.iterdir():
            try:
                os.kill(int(f.read_text()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        os.killpg(p.pid, signal.SIGKILL)
        lost.append(rng.randrange(RANKS))

    lines, kills, resumed = kill_loop(start, kills=2, max_after=30, rng=rng, kill=kill, progress=progress)
    assert lines[-1] == want, "\n".join(lines)
    assert kills == 2
    assert "job version 60" in lines, lines[-5:]
