"""What the command line names, read before anything heavy is imported: whether this process is `tenantctl`
itself, and which command it runs (the first word after the root options). Standard library only: the
package's ``__init__`` reads it on the process's first line (tenantctl/__init__.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT_OPTIONS_WITH_VALUE = ("--tenants",)


def own_argv() -> list[str] | None:
    """The arguments when this process is `tenantctl` itself (its script or `python -m tenantctl`); None
    when tenantctl is imported by other code (tests, `-c`). While `python -m` imports the package to find its
    ``__main__``, ``sys.argv[0]`` is still "-m" (Python's documentation of -m), so that counts as ours."""
    prog = Path(sys.argv[0]) if sys.argv else Path()
    if prog.name in ("tenantctl", "-m") or (prog.name == "__main__.py" and prog.parent.name == "tenantctl"):
        return sys.argv[1:]
    return None


def command_word(argv: list[str]) -> str | None:
    """The command ARGV names: its first word that is neither a root option nor a root option's value. None
    when there is none, or when `--help` comes first (the root's help)."""
    args = iter(argv)
    for arg in args:
        if arg in ROOT_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
        elif arg == "--help":
            return None
    return None
