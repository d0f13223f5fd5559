"""The CLI process becoming a gunicorn master (`serve`, `sandbox serve`), in this process where it may.

In this process rather than an exec'd interpreter: the second one imported again most of what the CLI had
(~0.9 s of a 10,000-tenant start, benchmarks/serve_scale.py), and until it had, a Ctrl-C printed a traceback
(the CLI's own hook, tenantctl/__init__.py, does not survive an exec). Signals reach the master directly.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from webhook_server.boot_signals import ignore_hangups_across_exec

# Modules that read the environment the webhook server's gunicorn.conf.py sets when they are first imported
# (PROMETHEUS_MULTIPROC_DIR, PSYCOPG_WAIT_FUNC): gunicorn may only run in this process while they are not.
IMPORTED_AFTER_CONFIG = ("prometheus_client", "psycopg")


def forget_cli_logging() -> None:
    """The root logger as a fresh interpreter has it: no handler, level WARNING.

    `tenantctl -v` / `--debug` give the root logger the CLI's handler; left in the master (and inherited by
    its workers) it would print the lines of any propagating logger in the CLI's format, beside gunicorn's
    own handlers (and outside JSON lines). The server logs as `python -m gunicorn` would.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.WARNING)


def run_gunicorn(cmd: list[str]) -> NoReturn:
    """Run ``cmd`` (``[python, "-m", "gunicorn", *options]``) as `python -m gunicorn` would, in this process; the
    environment is this process's. Should the CLI ever have imported a module of IMPORTED_AFTER_CONFIG, a fresh
    interpreter runs it instead (exec)."""
    if cmd[1:3] != ["-m", "gunicorn"]:
        raise ValueError(f"not a gunicorn command: {cmd[:3]}")
    if any(name in sys.modules for name in IMPORTED_AFTER_CONFIG):
        ignore_hangups_across_exec()  # held until here; gunicorn installs its own handler once it is up
        os.execv(cmd[0], cmd)  # noqa: S606
    import gunicorn
    from gunicorn.app.wsgiapp import WSGIApplication

    forget_cli_logging()
    sys.argv = [str(Path(gunicorn.__file__).parent / "__main__.py"), *cmd[3:]]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn").run()
    sys.exit(0)
