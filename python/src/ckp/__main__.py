"""python -m ckp ls|verify ...: the ckp command's ls and verify, with the same
arguments, output and exit codes (the command is built into the package).

    python -m ckp ls run.ckp              # checkpoints: versions kept, size, last saved
    python -m ckp ls run.ckp grid         # the versions of one checkpoint
    python -m ckp verify run.ckp          # check every version's hash (exit 1 if damaged)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

COMMAND_ENV = "CKP_COMMAND"
SUBCOMMANDS = ("ls", "verify")


def command_path() -> str:
    """The ckp command this package runs: the one built into it, or $CKP_COMMAND."""
    env = os.environ.get(COMMAND_ENV)
    if env:
        return env
    return str(Path(__file__).resolve().parent / "bin" / "ckp")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SUBCOMMANDS:
        print("usage: python -m ckp ls|verify [flags] FILE [NAME]\n"
              "(the ckp command's ls and verify; `python -m ckp ls -h` for flags)", file=sys.stderr)
        return 2
    cmd = command_path()
    if not os.access(cmd, os.X_OK):
        print(f"ckp: {cmd} is missing: install the package with pip (see the README), or set {COMMAND_ENV}",
              file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd, [cmd] + args)
    return 2  # not reached


if __name__ == "__main__":
    sys.exit(main())
