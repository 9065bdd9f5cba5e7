"""python -m ckp ls|verify runs the ckp command's ls and verify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ckp


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ckp", *args], capture_output=True, text=True, timeout=120)


def test_ls_and_verify(path: Path) -> None:
    with ckp.open(path, keep=2) as f:
        g = f.register("grid", bytearray(b"g" * 100_000))
        f.register("step", bytearray(8))
        for _ in range(3):
            f.save_all()
        g.save()
    r = run("ls", str(path))
    assert r.returncode == 0, r.stderr
    assert "grid" in r.stdout and "step" in r.stdout
    r = run("ls", str(path), "grid")
    assert r.returncode == 0, r.stderr
    lines = [l.split()[0] for l in r.stdout.splitlines()[1:] if l.strip()]
    assert lines == ["3", "4"], r.stdout
    r = run("ls", "--json", str(path))
    assert r.returncode == 0 and r.stdout.lstrip().startswith(("{", "[")), r.stdout
    r = run("verify", str(path))
    assert r.returncode == 0, r.stdout + r.stderr

    data = bytearray(path.read_bytes())
    i = data.find(b"g" * 4096)
    data[i + 10] ^= 1
    path.write_bytes(bytes(data))
    r = run("verify", str(path))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "grid" in r.stdout + r.stderr


def test_usage() -> None:
    for args in ([], ["cat", "x"], ["repair", "x"]):
        r = run(*args)
        assert r.returncode == 2 and "usage: python -m ckp ls|verify" in r.stderr
