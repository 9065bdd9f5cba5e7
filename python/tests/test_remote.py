"""The remote tier from Python: a store in a directory shared by the ranks of a job
(here two ranks in one process), flush, job_version, job_life, restore_job, launch=
and RestartError."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest

import ckp


def test_job_of_two_ranks(tmp_path: Path) -> None:
    store = tmp_path / "store"
    regions = [bytearray(4096), bytearray(4096)]

    def open_rank(r: int) -> ckp.File:
        return ckp.open(tmp_path / f"rank{r}.ckp", keep=2, remote=store, rank=r, ranks=2, timeout=30)

    files = [open_rank(r) for r in range(2)]
    try:
        for f, reg in zip(files, regions):
            f.register("state", reg)
            assert f.restore_job() == 0  # nothing committed yet: a fresh start
        for step in (1, 2, 3):
            for f, reg in zip(files, regions):
                reg[:8] = step.to_bytes(8, "little")
                f.save_all()
        # Rank 1 saves one more step than rank 0 before the job dies.
        regions[1][:8] = (4).to_bytes(8, "little")
        files[1].save_all()
        for f in files:
            f.flush()
        assert [f.job_version() for f in files] == [3, 3]
    finally:
        for f in files:
            f.close()

    # Restart, rank 1 on a new node: its local files are gone.
    for suffix in ("", ".idx"):
        (tmp_path / f"rank1.ckp{suffix}").unlink()
    files = [open_rank(r) for r in range(2)]
    try:
        for f, reg in zip(files, regions):
            reg[:] = bytes(4096)
            f.register("state", reg)
            assert f.restore_job() == 3
            assert int.from_bytes(reg[:8], "little") == 3
            f.save_all()  # version 4 again, the same step on both ranks
            assert f.newest("state") == 4
    finally:
        for f in files:
            f.close()


def test_remote_options(tmp_path: Path) -> None:
    with pytest.raises(ckp.InvalidArgumentError, match="rank=2 is not below ranks=2"):
        ckp.open(tmp_path / "a.ckp", remote=tmp_path / "s", rank=2, ranks=2)
    with pytest.raises(ckp.InvalidArgumentError, match="endpoint= is for an s3:// remote"):
        ckp.open(tmp_path / "a.ckp", remote=tmp_path / "s", endpoint="localhost:9000")
    with ckp.open(tmp_path / "a.ckp", remote=str(tmp_path / "s"), every=2, keep_remote=1,
                  max_pending=1 << 20, timeout="10s") as f:
        b = bytearray(100)
        f.register("b", b)
        for _ in range(4):
            f.save_all()
        f.flush()
        assert f.job_version() == 4


def _open_rank(tmp_path: Path, name: str, store: Path, r: int, region: bytearray,
               launch: Optional[str] = None) -> ckp.File:
    f = ckp.open(tmp_path / name, keep=4, remote=store, rank=r, ranks=2, timeout=30, launch=launch)
    f.register("state", region)
    return f


def test_job_life_and_restart_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    regions = [bytearray(4096), bytearray(4096)]
    files: List[ckp.File] = [_open_rank(tmp_path, f"r{r}.ckp", store, r, regions[r]) for r in range(2)]
    try:
        assert files[0].job_life() == ckp.JobLife(life=0, version=0)  # no rank joined yet
        for f in files:
            assert f.restore_job() == 0
        assert files[0].job_life() == (1, 0)
        for step in (1, 2):
            for f, reg in zip(files, regions):
                reg[:8] = step.to_bytes(8, "little")
                f.save_all()
        for f in files:
            f.flush()
        life = files[1].job_life()
        assert (life.life, life.version) == (1, 2)

        # Rank 1 restarts on another node: it ends life 1 and begins life 2 at version 2.
        files[1].close()
        regions[1][:] = bytes(4096)
        files[1] = _open_rank(tmp_path, "r1-elsewhere.ckp", store, 1, regions[1])
        assert files[1].restore_job() == 2
        assert int.from_bytes(regions[1][:8], "little") == 2
        assert [f.job_life() for f in files] == [(2, 2), (2, 2)]

        # Rank 0 went on: the job went on without it.
        regions[0][:8] = (3).to_bytes(8, "little")
        files[0].save_all()
        with pytest.raises(ckp.RestartError, match="RestoreJob") as e:
            files[0].flush()
        assert e.value.errno == ckp.ERESTART and isinstance(e.value, ckp.RemoteError)
        assert files[0].restore_job() == 2
        assert int.from_bytes(regions[0][:8], "little") == 2
        for f, reg in zip(files, regions):
            reg[:8] = (3).to_bytes(8, "little")
            f.save_all()
            f.flush()
        assert files[0].job_life() == (2, 3) and files[0].job_version() == 3
    finally:
        for f in files:
            f.close()
    with pytest.raises(ckp.ClosedError):
        files[0].job_life()
    with ckp.open(tmp_path / "local.ckp") as f:
        with pytest.raises(ckp.InvalidArgumentError, match="no remote tier"):
            f.job_life()


def test_launch(tmp_path: Path) -> None:
    """A rank of launch 1 still running when launch 2 begins (a zombie) gets
    RestartError from its next flush (and close) instead of moving into launch 2's
    life."""
    store = tmp_path / "store"
    regions = [bytearray(4096), bytearray(4096), bytearray(4096)]
    old = [_open_rank(tmp_path, f"l1r{r}.ckp", store, r, regions[r], launch="4242.0") for r in range(2)]
    for f in old:
        assert f.restore_job() == 0
    old[0].close()
    new0 = _open_rank(tmp_path, "l2r0.ckp", store, 0, regions[2], launch="4242.1")
    try:
        assert new0.restore_job() == 0
        assert new0.job_life() == (2, 0)
        old[1].save_all()
        with pytest.raises(ckp.RestartError):
            old[1].flush()
        with pytest.raises(ckp.RestartError):
            old[1].close()
    finally:
        new0.close()


def test_launch_option() -> None:
    assert ckp.options_string(remote="/s", launch="job.1") == "remote=/s launch=job.1"
    with pytest.raises(ckp.InvalidArgumentError, match="launch= wants a str"):
        ckp.options_string(remote="/s", launch=7)
    with pytest.raises(ckp.InvalidArgumentError, match="cannot be empty or hold a space"):
        ckp.options_string(remote="/s", launch="a b")


def test_launch_refused(tmp_path: Path) -> None:
    with pytest.raises(ckp.InvalidArgumentError, match="launch= needs remote="):
        ckp.open(tmp_path / "a.ckp", launch="job.1")
    with pytest.raises(ckp.InvalidArgumentError, match="launch= of 257 bytes: at most 256"):
        ckp.open(tmp_path / "a.ckp", remote=tmp_path / "s", launch="x" * 257)
    with ckp.open(tmp_path / "a.ckp", remote=tmp_path / "s", launch="x" * 256) as f:
        f.flush()
