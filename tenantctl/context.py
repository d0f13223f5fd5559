"""What every command gets: settings, where the tenants are, and how to print."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from tenancy.loader import LoadResult, load_tenants
from tenancy.redact import REDACTOR
from tenancy.settings import Settings


@dataclass
class Context:
    settings: Settings
    tenants_dir: Path
    debug: bool = False
    quiet: bool = False  # no live progress on stderr (plan/apply/health --quiet)
    # Pipes and CI logs get a fixed, wide layout instead of rich's 80-column default.
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True,
                                                         width=None if sys.stdout.isatty() else 160))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))

    def load(self, paths: list[Path] | None = None) -> LoadResult:
        if not paths and not self.tenants_dir.exists():
            from tenantctl.errors import missing_tenants_dir

            raise missing_tenants_dir(self.tenants_dir)
        return load_tenants(paths or [self.tenants_dir])

    def echo(self, text: str = "") -> None:
        """Plain output, scrubbed of every known secret value."""
        sys.stdout.write(REDACTOR.scrub(text) + "\n")
