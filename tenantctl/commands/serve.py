"""`tenantctl serve`: run the webhook server under gunicorn (the CLI process becomes the gunicorn master)."""

from __future__ import annotations

import importlib.util
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from store.engine import make_engine, missing_sqlite_file, redact_url
from store.errors import DatabaseNotMigrated
from store.migrate import require_up_to_date
from tenancy.escape import printable
from tenantctl.context import Context
from tenantctl.errors import database_to_create
from tenantctl.gunicorn_master import forget_cli_logging, run_gunicorn
from webhook_server.server_config import ServerConfig, bind_problem

APP_SPEC = "webhook_server.app:get_app()"


class WorkerClass(StrEnum):
    """gunicorn worker classes the server supports (webhook_server.server_config.WORKER_CLASSES)."""

    gevent = "gevent"
    gthread = "gthread"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def gunicorn_config_path() -> Path:
    """The server's gunicorn.conf.py, found without importing the server package."""
    spec = importlib.util.find_spec("webhook_server")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the webhook_server package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "gunicorn.conf.py"


def server_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(gunicorn_config_path()), APP_SPEC]


def serve(
    ctx: typer.Context,
    bind: Annotated[str | None, typer.Option("--bind", envvar="TENANTCTL_BIND", help="HOST:PORT.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, envvar="TENANTCTL_WORKERS",
                                                help="Worker processes.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, envvar="TENANTCTL_THREADS",
                                                help="Threads per worker (gthread).")] = None,
    worker_class: Annotated[WorkerClass | None, typer.Option(
        "--worker-class", envvar="TENANTCTL_WORKER_CLASS",
        help="gevent (default): greenlets; gthread: a thread per request.")] = None,
) -> None:
    """Serve every tenant's webhooks. `kill -HUP <pid>` reloads the tenant files without dropping requests."""
    c: Context = ctx.obj
    address = bind or os.environ.get("TENANTCTL_BIND", "").strip() or ServerConfig.bind
    if (problem := bind_problem(address)) is not None:
        c.err.print(printable(f"error: cannot listen on {address!r} (--bind, TENANTCTL_BIND): {problem}; use "
                              "HOST:PORT like 127.0.0.1:8000, [::1]:8000 or unix:/run/tenantctl.sock"), markup=False)
        raise typer.Exit(1)
    forget_cli_logging()  # before the database check too: its alembic lines would come in the CLI's format
    url = c.settings.resolved_database_url
    if (path := missing_sqlite_file(url)) is not None:
        c.err.print(printable(f"error: {database_to_create(path)}"), markup=False)
        raise typer.Exit(1)
    engine = make_engine(url)
    try:
        require_up_to_date(engine)
    except DatabaseNotMigrated as e:
        c.err.print(f"error: {e} (database {redact_url(url)})")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    os.environ["TENANTCTL_TENANTS"] = str(c.tenants_dir)
    knobs = {"TENANTCTL_BIND": bind, "TENANTCTL_WORKERS": workers, "TENANTCTL_THREADS": threads,
             "TENANTCTL_WORKER_CLASS": worker_class.value if worker_class else None}
    os.environ.update({name: str(value) for name, value in knobs.items() if value is not None})
    sys.stdout.flush()
    sys.stderr.flush()
    become_gunicorn_master()


def become_gunicorn_master() -> NoReturn:
    """Run gunicorn's master in this process, as `python -m gunicorn -c <conf> <app>` would
    (tenantctl/gunicorn_master.py); a USR2 upgrade re-executes `python -m gunicorn` with the options of
    :func:`server_command` and this environment (server_hooks.reexec_as_module)."""
    run_gunicorn(server_command())
