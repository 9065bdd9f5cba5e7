"""Every function of the ckp package, on real files through libckp."""

from __future__ import annotations

import array
import gc
import threading
from pathlib import Path

import pytest

import ckp
from conftest import need


def test_open_close_context(path: Path) -> None:
    with ckp.open(path) as f:
        assert not f.closed
        assert f.path == str(path)
        assert "0 checkpoints" in repr(f)
    assert f.closed
    f.close()  # a second close does nothing
    assert path.exists() and Path(str(path) + ".idx").exists()
    with pytest.raises(ckp.ClosedError):
        f.save_all()


def test_options_string() -> None:
    s = ckp.options_string(
        "workers=1",
        sync="every:10",
        keep=3,
        differential=True,
        insecure=False,
        remote=Path("/shared/run"),
        timeout=1.5,
        max_pending=None,
    )
    assert s == "workers=1 sync=every:10 keep=3 differential=1 insecure=0 remote=/shared/run timeout=1.5s"
    assert ckp.options_string(timeout="2m") == "timeout=2m"
    for bad in ({"keep": "3"}, {"keep": True}, {"differential": 1}, {"sync": 3}, {"remote": "/a b"},
                {"remote": "/a,b"}, {"sync": ""}, {"colour": "blue"}):
        with pytest.raises(ckp.InvalidArgumentError):
            ckp.options_string(**bad)


def test_open_options_reach_the_library(path: Path) -> None:
    with ckp.open(path, sync="always", keep=2, workers=1, max_size=1 << 30) as f:
        b = bytearray(4096)
        f.register("b", b)
        for i in range(4):
            b[0] = i
            f.save("b")
        assert f.versions("b") == [3, 4]  # keep=2
    # A raw options string, with commas.
    with ckp.open(path, options="sync=every:2,keep=1") as f:
        f.register("b", b)
        f.save("b")
        assert f.versions("b") == [5]


def test_register_buffer_kinds(path: Path) -> None:
    np = need("numpy")
    regions = {
        "ndarray": np.arange(1000, dtype=np.float64).reshape(10, 100),
        "scalar": np.zeros((), dtype=np.int64),
        "bytearray": bytearray(b"abcdef"),
        "memoryview": memoryview(bytearray(b"0123456789"))[2:8],
        "array": array.array("i", [1, 2, 3]),
        "structured": np.zeros(3, dtype=[("step", "i8"), ("t", "f8")]),
    }
    with ckp.open(path) as f:
        for name, r in regions.items():
            c = f.register(name, r)
            assert c.name == name and c.file is f and c.buffer is r
            assert c.nbytes == memoryview(r).nbytes
        f.save_all()
        want = {n: bytes(memoryview(r).cast("B")) for n, r in regions.items()}
        for r in regions.values():
            m = memoryview(r).cast("B")
            m[:] = bytes(len(m))
        f.restore_all()
        for n, r in regions.items():
            assert bytes(memoryview(r).cast("B")) == want[n], n


def test_register_torch_tensors(path: Path) -> None:
    torch = need("torch")
    ts = {
        "f32": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "bf16": torch.arange(8, dtype=torch.bfloat16),
        "param": torch.nn.Parameter(torch.ones(5)),  # requires grad
        "long": torch.tensor(7),
    }
    with ckp.open(path) as f:
        for n, t in ts.items():
            f.register(n, t)
        f.save_all()
        want = {n: t.detach().clone() for n, t in ts.items()}
        with torch.no_grad():
            for t in ts.values():
                t.zero_()
        f.restore_all()
        for n, t in ts.items():
            assert torch.equal(t.detach(), want[n]), n
        with pytest.raises(ckp.InvalidArgumentError, match="not contiguous"):
            f.register("t", torch.ones(4, 4).t())


def test_register_refuses(path: Path) -> None:
    np = need("numpy")
    with ckp.open(path) as f:
        cases = {
            "read-only": b"bytes",
            "not C-contiguous": np.zeros((4, 4))[:, ::2],
            "empty": bytearray(),
            "not a buffer": [1, 2, 3],
        }
        for what, obj in cases.items():
            with pytest.raises(ckp.InvalidArgumentError, match=what):
                f.register("x", obj)
        frozen = np.zeros(4)
        frozen.flags.writeable = False
        with pytest.raises(ckp.InvalidArgumentError, match="read-only"):
            f.register("x", frozen)
        b = bytearray(8)
        for name in ["", "a\0b", "x" * 256]:
            with pytest.raises(ckp.InvalidArgumentError):
                f.register(name, b)
        with pytest.raises(ckp.InvalidArgumentError):
            f.register(3, b)  # type: ignore[arg-type]
        f.register("é" * 127, b)  # 254 bytes of UTF-8: fine
        assert f.names() == ["é" * 127]


def test_save_restore_versions(path: Path) -> None:
    b = bytearray(1000)
    with ckp.open(path) as f:
        c = f.register("b", b)
        assert c.newest() == 0 and c.versions() == []
        for i in range(1, 6):
            b[:] = bytes([i]) * len(b)
            c.save()
        assert c.newest() == 5 and f.newest("b") == 5
        assert c.versions() == [1, 2, 3, 4, 5] == f.versions("b")
        c.restore(2)
        assert b[0] == 2
        c.restore(-1)
        assert b[0] == 4
        f.restore("b", 0)
        assert b[0] == 5
        f.restore("b", 1)
        assert b[0] == 1


def test_versions_many(path: Path) -> None:
    b = bytearray(8)
    with ckp.open(path) as f:
        c = f.register("b", b)
        for _ in range(300):  # more than versions() asks for at first
            c.save()
        assert c.versions() == list(range(1, 301))


def test_save_all_restore_all(path: Path) -> None:
    a, b = bytearray(100), bytearray(3000)
    with ckp.open(path, keep=3) as f:
        f.register("a", a)
        f.register("b", b)
        f.save_all()  # version 1 of both: zeros
        for i in (1, 2):
            a[:] = bytes([i]) * 100
            b[:] = bytes([10 + i]) * 3000
            f.save_all()
        f.restore_all(-1)
        assert (a[0], b[0]) == (1, 11)
        f.restore_all(1)
        assert (a[0], b[0]) == (0, 0)
        f.restore_all()
        assert (a[0], b[0]) == (2, 12)
    with ckp.open(path) as f:  # reopened: the versions are there
        f.register("a", a)
        f.register("b", b)
        assert f.versions("a") == [1, 2, 3]
        a[:] = bytes(100)
        f.restore_all()
        assert a[0] == 2
    with ckp.open(path) as f:  # nothing registered: nothing to do
        f.save_all()
        f.restore_all()


def test_regions_are_held(path: Path) -> None:
    with ckp.open(path) as f:
        f.register("tmp", bytearray(b"x" * 4096))  # no other reference
        gc.collect()
        f.save("tmp")
        r = f["tmp"].buffer
        r[:] = bytes(4096)
        f.restore("tmp")
        assert r == bytearray(b"x" * 4096)
        with pytest.raises(BufferError):  # its memory cannot move while registered
            r.extend(b"more")
        f.unregister("tmp")
        r.extend(b"more")  # released
        held = bytearray(16)
        f.register("held", held)
    held.extend(b"more")  # released by close


def test_unregister_locate(path: Path) -> None:
    b = bytearray(64)
    with ckp.open(path) as f:
        c = f.register("b", b)
        assert f.locate("b") is c and f["b"] is c and "b" in f and "x" not in f
        b[0] = 9
        c.save()
        c.unregister()
        assert "b" not in f and f.names() == []
        with pytest.raises(ckp.NotFoundError):
            f.locate("b")
        with pytest.raises(ckp.NotFoundError):
            f.unregister("b")
        with pytest.raises(ckp.NotFoundError):  # the library refuses the old handle
            c.save()
        c2 = f.register("b", bytearray(64))  # the versions are still there
        assert c2.versions() == [1]
        c2.restore()
        assert c2.buffer[0] == 9


def test_sync_flush_without_remote(path: Path) -> None:
    with ckp.open(path, sync="none") as f:
        f.register("b", bytearray(10))
        f.save_all()
        f.sync()
        f.flush()  # no remote tier: returns at once
        with pytest.raises(ckp.InvalidArgumentError, match="remote"):
            f.job_version()
        with pytest.raises(ckp.InvalidArgumentError, match="remote"):
            f.restore_job()


def test_closed_file(path: Path) -> None:
    f = ckp.open(path)
    c = f.register("b", bytearray(10))
    f.close()
    for call in (f.save_all, f.restore_all, f.sync, f.flush, f.job_version, f.restore_job,
                 lambda: f.register("x", bytearray(1)), lambda: f.locate("b"), lambda: f.save("b")):
        with pytest.raises(ckp.ClosedError):
            call()
    for call in (c.save, c.restore, c.newest, c.versions):  # the library refuses the handle
        with pytest.raises(ckp.ClosedError):
            call()


def test_threads(path: Path) -> None:
    """Saves of different checkpoints from several threads at once."""
    regions = [bytearray(bytes([i]) * 100_000) for i in range(4)]
    with ckp.open(path) as f:
        cs = [f.register(f"r{i}", r) for i, r in enumerate(regions)]
        errs: list[BaseException] = []

        def work(c: ckp.Checkpoint) -> None:
            try:
                for _ in range(50):
                    c.save()
            except BaseException as e:  # pragma: no cover
                errs.append(e)

        ts = [threading.Thread(target=work, args=(c,)) for c in cs]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs
        assert all(c.newest() == 50 for c in cs)


def test_library_path() -> None:
    assert Path(ckp.library_path()).exists()
