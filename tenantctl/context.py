"""What every command gets: settings, where the tenants are, and how to print."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from tenancy.loader import LoadResult, load_tenants
from tenancy.redact import REDACTOR
from tenancy.settings import Settings


def colour_opted_out(no_color: bool = False) -> bool:
    """--no-color, NO_COLOR (non-empty, no-color.org) or TERM=dumb: no escape codes at all."""
    return no_color or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def colour_allowed(no_color: bool = False) -> bool:
    """Colour only on a terminal, and never when the user opted out."""
    return not colour_opted_out(no_color) and sys.stdout.isatty()


def console(*, stderr: bool = False, no_color: bool = False) -> Console:
    # Pipes and CI logs get a fixed, wide layout instead of rich's 80-column default.
    wide = None if (sys.stderr if stderr else sys.stdout).isatty() else 160
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stderr else wide,
                   color_system=None if colour_opted_out(no_color) else "auto")


@dataclass
class Context:
    settings: Settings
    tenants_dir: Path
    debug: bool = False
    quiet: bool = False  # no live progress on stderr (plan/apply/health --quiet)
    out: Console = field(default_factory=console)
    err: Console = field(default_factory=lambda: console(stderr=True))
    colour: bool = field(default_factory=colour_allowed)
    data_on_stdout: bool = False  # stdout is a machine-read document (JSON): diagnostics go to stderr
    last_error: str | None = None  # the last `error:` line printed, for a document that must carry it

    def require_tenants_dir(self) -> None:
        """Raise the teaching error (names --tenants and TENANTCTL_TENANTS) when the directory is missing."""
        if not self.tenants_dir.exists():
            from tenantctl.errors import missing_tenants_dir

            raise missing_tenants_dir(self.tenants_dir)

    def load(self, paths: list[Path] | None = None) -> LoadResult:
        if not paths:
            self.require_tenants_dir()
        return load_tenants(paths or [self.tenants_dir])

    def echo(self, text: str = "") -> None:
        """Plain output, scrubbed of every known secret value."""
        sys.stdout.write(REDACTOR.scrub(text) + "\n")
