"""The remote tier from Python: a store in a directory shared by the ranks of a job
(here two ranks in one process), flush, job_version and restore_job."""

from __future__ import annotations

from pathlib import Path

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
