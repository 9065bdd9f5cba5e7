"""Every status code of the library raises its own exception class, carrying the
library's message; a failed call loses nothing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import ckp


@pytest.mark.parametrize(
    "status, cls",
    [
        (errno.EINVAL, ckp.InvalidArgumentError),
        (errno.ENOENT, ckp.NotFoundError),
        (errno.EEXIST, ckp.ExistsError),
        (errno.ERANGE, ckp.VersionError),
        (errno.EMSGSIZE, ckp.SizeError),
        (errno.EBADF, ckp.ClosedError),
        (errno.EWOULDBLOCK, ckp.LockedError),
        (errno.EIO, ckp.CorruptError),
        (errno.EFBIG, ckp.FullError),
        (ckp.EREMOTEIO, ckp.RemoteError),
        (ckp.ERESTART, ckp.RestartError),
        (errno.ENOSPC, ckp.Error),
    ],
)
def test_classes(status: int, cls: type) -> None:
    assert ckp.error_class(status) is cls
    e = cls(status, "ckp: something")
    assert isinstance(e, ckp.Error) and isinstance(e, OSError)
    assert e.errno == e.status == status and str(e) == e.message == "ckp: something"


def raises(cls: type, status: int, *words: str):
    """A context that expects exactly cls with status, its message holding words."""

    class _Ctx:
        def __enter__(self) -> None:
            return None

        def __exit__(self, typ, e, tb) -> bool:
            assert typ is cls, f"raised {typ}, want {cls}: {e}"
            assert e.errno == status
            for w in words:
                assert w in str(e), f"{str(e)!r} lacks {w!r}"
            return True

    return _Ctx()


def test_einval(path: Path) -> None:
    with raises(ckp.InvalidArgumentError, errno.EINVAL, 'unknown key "colour"'):
        ckp.open(path, options="colour=blue")
    with raises(ckp.InvalidArgumentError, errno.EINVAL, "separated by spaces or commas"):
        ckp.open(path, options="sync=always;keep=2")
    with raises(ckp.InvalidArgumentError, errno.EINVAL, "sync=sometimes"):
        ckp.open(path, sync="sometimes")
    with raises(ckp.InvalidArgumentError, errno.EINVAL, "every= needs remote="):
        ckp.open(path, every=3)
    with pytest.raises(ValueError):  # also a ValueError
        ckp.open(path, keep=-1)
    assert not path.exists()  # nothing was created


def test_enoent(path: Path, tmp_path: Path) -> None:
    with raises(ckp.NotFoundError, errno.ENOENT, "no-such-dir"):
        ckp.open(tmp_path / "no-such-dir" / "a.ckp")
    with ckp.open(path) as f:
        c = f.register("a", bytearray(8))
        c.unregister()
        with raises(ckp.NotFoundError, errno.ENOENT, "not registered"):
            c.save()
        with raises(ckp.NotFoundError, errno.ENOENT, "'a'"):
            f.restore("a")


def test_eexist(path: Path) -> None:
    with ckp.open(path) as f:
        f.register("a", bytearray(8))
        with raises(ckp.ExistsError, errno.EEXIST, "already registered", '"a"'):
            f.register("a", bytearray(8))


def test_erange(path: Path) -> None:
    b = bytearray(8)
    with ckp.open(path, keep=2) as f:
        f.register("a", b)
        with raises(ckp.VersionError, errno.ERANGE, "no such version"):
            f.restore_all()
        for i in range(4):
            b[0] = i
            f.save("a")
        b[0] = 99
        with raises(ckp.VersionError, errno.ERANGE, "version 1"):  # dropped by keep=2
            f.restore("a", 1)
        with raises(ckp.VersionError, errno.ERANGE):
            f.restore("a", -5)
        with raises(ckp.VersionError, errno.ERANGE):
            f.restore("a", 1 << 40)  # beyond a C int
        assert b[0] == 99  # untouched


def test_emsgsize(path: Path) -> None:
    with ckp.open(path) as f:
        f.register("a", bytearray(8)).save()
        f.unregister("a")
        bigger = bytearray(b"z" * 16)
        f.register("a", bigger)
        with raises(ckp.SizeError, errno.EMSGSIZE, "size"):
            f.restore_all()
        assert bigger == bytearray(b"z" * 16)


def test_ebadf(path: Path) -> None:
    f = ckp.open(path)
    c = f.register("a", bytearray(8))
    f.close()
    with raises(ckp.ClosedError, errno.EBADF, "closed"):
        c.save()
    with raises(ckp.ClosedError, errno.EBADF, "closed"):
        f.save_all()


def test_ewouldblock(path: Path) -> None:
    with ckp.open(path):
        with raises(ckp.LockedError, errno.EWOULDBLOCK, str(path)):
            ckp.open(path)


def test_eio_not_a_ckp_file(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint file" * 200)
    with raises(ckp.CorruptError, errno.EIO):
        ckp.open(path)
    assert path.read_bytes() == b"this is not a checkpoint file" * 200  # untouched


def test_eio_damaged_version(path: Path) -> None:
    b = bytearray(b"A" * 65536)
    with ckp.open(path) as f:
        f.register("a", b).save()
    data = bytearray(path.read_bytes())
    i = data.find(b"A" * 4096)
    data[i + 100] ^= 0xFF
    path.write_bytes(bytes(data))
    with ckp.open(path) as f:
        r = bytearray(b"untouched".ljust(65536, b"."))
        f.register("a", r)
        with raises(ckp.CorruptError, errno.EIO, "hash"):
            f.restore_all()
        assert r.startswith(b"untouched")


def test_efbig(path: Path) -> None:
    b = bytearray(1 << 20)
    with ckp.open(path, max_size=3 << 20) as f:
        c = f.register("a", b)
        c.save()
        with raises(ckp.FullError, errno.EFBIG, "data file full"):
            for _ in range(10):
                c.save()
        n = c.newest()
        assert n >= 1 and c.versions()[-1] == n
        c.restore()  # what was saved is intact


def test_eremoteio(path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with raises(ckp.RemoteError, ckp.EREMOTEIO, "remote"):
        ckp.open(path, remote=blocker / "store")


def test_restart_error_is_a_remote_error() -> None:
    assert issubclass(ckp.RestartError, ckp.RemoteError)
    assert ckp.ERESTART == errno.ERESTART  # Linux's, which the library returns here


def test_system_errno(path: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with raises(ckp.Error, errno.ENOTDIR):
        ckp.open(blocker / "a.ckp")
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with raises(ckp.Error, errno.EACCES):
            ckp.open(ro / "a.ckp")
