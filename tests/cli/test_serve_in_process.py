"""`tenantctl serve` becomes the gunicorn master in its own process (no second interpreter to start), which
it may only do while the CLI has imported nothing that reads gunicorn.conf.py's environment on import."""

from __future__ import annotations

import subprocess
import sys

from tenantctl.commands.serve import IMPORTED_AFTER_CONFIG


def test_the_cli_imports_nothing_that_must_see_the_servers_environment_first() -> None:
    names = ", ".join(repr(n) for n in IMPORTED_AFTER_CONFIG)
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, tenantctl.cli; print([n for n in ({names},) if n in sys.modules])"],
        capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
