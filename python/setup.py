"""Builds the ckp package: the Python sources plus libckp and the ckp command, both
built with `go build` from the ckp source tree this directory belongs to.

The metadata is in pyproject.toml; this file only adds the Go build to build_py and
marks the wheel as platform-specific (it holds a shared library). Environment:

    GO   the go command (default: go on PATH, else /usr/local/go/bin/go)
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the Go module: go.mod, capi/, cmd/ckp/


def library_name() -> str:
    return "libckp.dylib" if sys.platform == "darwin" else "libckp.so"


def go_command() -> str:
    go = os.environ.get("GO") or shutil.which("go")
    if not go and os.path.exists("/usr/local/go/bin/go"):
        go = "/usr/local/go/bin/go"
    if not go:
        sys.exit("ckp: building the package needs Go 1.26 (set GO=/path/to/go or put go on PATH)")
    return go


def build_go(dest: Path) -> None:
    """Builds libckp (c-shared) and the ckp command into dest (the package directory).

    go build also writes cgo's own header, libckp.h, beside the library: it is built
    in a temporary directory and only the library is copied, so no such header is
    shipped (ckp_util.h in the source tree is the C interface).
    """
    if not (ROOT / "go.mod").exists() or not (ROOT / "capi").is_dir():
        sys.exit(f"ckp: {ROOT} is not the ckp source tree: the package builds from python/ inside it")
    go = go_command()
    env = dict(os.environ, CGO_ENABLED="1")
    lib = library_name()
    with tempfile.TemporaryDirectory(prefix="ckp-build-") as tmp:
        for args in (
            ["build", "-buildmode=c-shared", "-o", os.path.join(tmp, lib), "./capi"],
            ["build", "-o", os.path.join(tmp, "ckp"), "./cmd/ckp"],
        ):
            print("ckp: " + " ".join([go] + args), file=sys.stderr)
            subprocess.run([go] + args, cwd=ROOT, env=env, check=True)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(tmp, lib), dest / lib)
        (dest / "bin").mkdir(exist_ok=True)
        shutil.copy2(os.path.join(tmp, "ckp"), dest / "bin" / "ckp")


class build_py(_build_py):
    """build_py that also builds and adds libckp and the ckp command."""

    def run(self) -> None:
        # Start from nothing: a file left by an earlier build would go into the wheel.
        shutil.rmtree(Path(self.build_lib) / "ckp", ignore_errors=True)
        super().run()
        build_go(Path(self.build_lib) / "ckp")


class BinaryDistribution(Distribution):
    """A distribution with a native library: its wheel is tagged for this platform."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": build_py}, distclass=BinaryDistribution)
