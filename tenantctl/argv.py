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


def join_bash_assignments(words: list[str], cword: int) -> tuple[list[str], int]:
    """Bash's completion words with each ``--option = value`` it split at ``=`` (COMP_WORDBREAKS) put back as
    one word, as the command line has it; returns the words and the cursor's index among them. With the cursor
    on the value, the ``=`` alone is dropped: the value is completed as the option's, and bash replaces only
    the value. Other words are kept as they are."""
    out: list[str] = []
    cursor = cword
    i = 0
    while i < len(words):
        word = words[i]
        if word == "=" and out and out[-1].startswith("--") and 0 < i < cword:
            if i + 1 < cword:  # the value is typed in full: one word again
                out[-1] = f"{out[-1]}={words[i + 1]}"
                cursor -= 2
                i += 2
                continue
            cursor -= 1  # the cursor is on the value
            i += 1
            continue
        out.append(word)
        i += 1
    return out, cursor
