"""`tenantctl serve` becomes the gunicorn master in its own process (no second interpreter to start), which
it may only do while the CLI has imported nothing that reads gunicorn.conf.py's environment on import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tenantctl.gunicorn_master import IMPORTED_AFTER_CONFIG


def test_the_cli_imports_nothing_that_must_see_the_servers_environment_first() -> None:
    names = ", ".join(repr(n) for n in IMPORTED_AFTER_CONFIG)
    out = subprocess.run(
        [sys.executable, "-c", f"import sys, tenantctl.cli; print([n for n in ({names},) if n in sys.modules])"],
        capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_the_master_drops_the_clis_verbose_log_handler_and_level() -> None:
    # What `tenantctl -v serve` leaves on the root logger before becoming the master, checked in a fresh process.
    code = (
        "import logging\n"
        "from tenantctl.cli import app\n"
        "from typer.testing import CliRunner\n"
        "from tenantctl.commands.serve import forget_cli_logging\n"
        "CliRunner().invoke(app, ['-v', 'list'])\n"
        "root = logging.getLogger()\n"
        "before = (len(root.handlers), logging.getLevelName(root.level))\n"
        "forget_cli_logging()\n"
        "print(before, (len(root.handlers), logging.getLevelName(root.level)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "(1, 'INFO') (0, 'WARNING')"


def test_verbose_serve_prints_nothing_in_the_clis_format_before_the_master_starts(tmp_path: Path) -> None:
    # The database check runs before the master: with -v its alembic lines came through the CLI's handler
    # ("... INFO alembic.runtime.migration: Context impl SQLiteImpl."), outside JSON lines.
    code = (
        "import sys\n"
        "import tenantctl.commands.serve as serve\n"
        "from tenantctl.cli import app\n"
        "from store.migrate import upgrade\n"
        f"upgrade('sqlite:///{tmp_path}/t.db')\n"
        "serve.become_gunicorn_master = lambda: sys.exit(0)\n"
        "app(['-v', 'serve'])\n")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "TENANTCTL_LOG_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "alembic" not in out.stderr, out.stderr
