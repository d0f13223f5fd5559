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


def colour_allowed(no_color: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color, NO_COLOR (any value) or TERM=dumb."""
    return not (no_color or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb") \
        and sys.stdout.isatty()


@dataclass
class Context:
    settings: Settings
    tenants_dir: Path
    debug: bool = False
    # Pipes and CI logs get a fixed, wide layout instead of rich's 80-column default.
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True,
                                                         width=None if sys.stdout.isatty() else 160))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))
    colour: bool = field(default_factory=colour_allowed)

    def load(self, paths: list[Path] | None = None) -> LoadResult:
        return load_tenants(paths or [self.tenants_dir])

    def echo(self, text: str = "") -> None:
        """Plain output, scrubbed of every known secret value."""
        sys.stdout.write(REDACTOR.scrub(text) + "\n")
