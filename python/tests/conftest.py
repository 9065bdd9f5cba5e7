"""Shared pieces of the ckp package's tests.

Run from the source tree with the interpreter Debian's packages install into:

    /usr/bin/python3 -m pytest python/tests

against the installed package, or against a library built by hand with
CKP_LIBRARY=/path/libckp.so CKP_COMMAND=/path/ckp PYTHONPATH=python/src (what
`go test ./python` does). Tests that need numpy, torch, mpi4py or mpirun skip when
they are missing, unless CKP_PYTHON_REQUIRE=1 (as .ci/run sets it after
.ci/python-setup.sh installed them): then they fail.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python"
REQUIRE_ENV = "CKP_PYTHON_REQUIRE"


def _missing(what: str) -> None:
    msg = f"{what} not installed (bash .ci/python-setup.sh installs it)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {msg}")
    pytest.skip(msg)


def need(module: str) -> ModuleType:
    """Imports module, or skips the test (fails it with CKP_PYTHON_REQUIRE=1)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        _missing(f"the Python module {module}")
        raise  # not reached


def need_tool(tool: str) -> str:
    """Returns the path of tool on PATH, or skips (fails) the test."""
    p = shutil.which(tool)
    if p is None:
        _missing(tool)
    return p


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A checkpoint file's path in a fresh directory."""
    return tmp_path / "t.ckp"
