"""What gunicorn.conf.py wires into gunicorn: start-up checks, routing (re)load, log scrubbing.

The MASTER loads and validates the tenants, at start (``on_starting``) and on SIGHUP (``on_reload``),
into the holder in ``webhook_server.routing``; workers are forked from the master afterwards and inherit
it, so each worker has its routing from the start and never builds one per request. A reload whose tenant
files fail validation is refused: the previous routing stays installed and the new workers get it.
Nothing here imports Falcon or prometheus_client at module level: the master must not import
prometheus_client before ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from store.engine import make_engine, redact_url
from store.errors import DatabaseNotMigrated
from store.migrate import require_up_to_date
from tenancy.escape import printable
from tenancy.redact import REDACTOR, RedactingFilter
from tenancy.settings import Settings, load_settings, reload_dotenv
from webhook_server import reload_status
from webhook_server import routing as routing_holder
from webhook_server.routing import RoutingRefused, load_routing
from webhook_server.server_config import MULTIPROC_ENV

log = logging.getLogger("webhook_server.server")

# Our packages log through gunicorn's error log, scrubbed like everything else.
APP_LOGGERS = ("webhook_server", "store", "tenancy")


class EscapingFormatter(logging.Formatter):
    """A text formatter whose message is one line whatever it carries: outside text (a path, an event id)
    cannot forge log lines or write terminal escapes (tenancy.escape.printable). Tracebacks stay as they
    are: they come from our code."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message (and exc when any)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


# The access log's fields in JSON mode (gunicorn atoms; never the query string: see server_config).
JSON_ACCESS_ATOMS = {"remote": "h", "method": "m", "path": "U", "protocol": "H", "status": "s",
                     "bytes": "B", "ms": "M", "agent": "a"}


def log_format() -> str:
    """TENANTCTL_LOG_FORMAT: "text" (default) or "json". A bad value falls back to text: the server
    refuses it at start anyway (settings validation), but logging must work to say so."""
    try:
        return load_settings().log_format
    except Exception:
        return "text"


class RedactingLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger with every handler scrubbed by value (re-applied on each reload's setup), every
    outside value escaped, and JSON lines when TENANTCTL_LOG_FORMAT=json."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.json_lines = log_format() == "json"
        scrub = RedactingFilter()
        for lg in (self.error_log, self.access_log):
            for h in lg.handlers:
                if not any(isinstance(f, RedactingFilter) for f in h.filters):
                    h.addFilter(scrub)
        for h in self.error_log.handlers:
            old = h.formatter
            h.setFormatter(JsonLineFormatter() if self.json_lines else EscapingFormatter(
                old._fmt if old else None, old.datefmt if old else None))
        for h in self.access_log.handlers:
            h.setFormatter(logging.Formatter("%(message)s"))
        for name in APP_LOGGERS:
            app_log = logging.getLogger(name)
            app_log.handlers = list(self.error_log.handlers)
            app_log.setLevel(logging.INFO)
            app_log.propagate = False


    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        # The decoded path, the user agent, any header: all outside text, escaped before the line.
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {k: printable(v) if isinstance(v, str) else v for k, v in atoms.items()}

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if not self.json_lines:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        line = {name: atoms.get(atom, "-") for name, atom in JSON_ACCESS_ATOMS.items()}
        line["time"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.access_log.info("%s", json.dumps(line, ensure_ascii=True, default=str))


def prometheus_dir(settings: Settings) -> Path:
    return Path(os.environ.get(MULTIPROC_ENV) or settings.state_dir / "prometheus")


def _reset_prometheus_dir(path: Path) -> None:
    # Files of a previous run would add its counts to ours.
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob("*.db"):
        f.unlink()


def check_database(settings: Settings) -> str | None:
    """None when the database is reachable and migrated, else the message to refuse to start with."""
    url = settings.resolved_database_url
    engine = make_engine(url)
    try:
        require_up_to_date(engine)
    except DatabaseNotMigrated as e:
        return f"{e} (database {redact_url(url)})"
    except Exception as e:  # unreachable, bad credentials: say which database, never its password
        return f"database {redact_url(url)} unreachable: {type(e).__name__}"
    finally:
        engine.dispose()  # no connection may cross the fork into a worker
    return None


@contextlib.contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """The cyclic garbage collector off while the tenants load; what the load left alive is frozen (out of
    the collector's sight) before it is on again, unless the load raised.

    The loaded tenants live as long as the master: frozen, no collection in the master or a forked worker
    walks (and copies, page by page) them again (10,000 tenants: ~4 M objects). Frozen only after the load:
    re-enabled in between, the collector first walked every object the load made, in a young, a middle and
    a full collection (~1.3 s of CPU for 10,000 tenants), to find nothing (a load leaves no cycles).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


def reexec_as_module(server: Any) -> None:
    """USR2 (gunicorn's binary upgrade) re-executes the master with ``sys.argv``, whose first item is
    gunicorn's ``__main__.py`` whether it was started with ``python -m gunicorn`` or by `tenantctl serve`:
    run as a script, that file puts gunicorn's own directory first on ``sys.path``, where its ``http``
    package hides the standard library's and the new master dies loading the worker class. Re-execute
    ``python -m gunicorn`` with the same options instead."""
    args = server.START_CTX["args"]
    if len(args) > 1 and Path(args[1]).name == "__main__.py":
        server.START_CTX["args"] = [args[0], "-m", "gunicorn", *args[2:]]


def on_starting(server: Any) -> None:
    reexec_as_module(server)
    settings = load_settings()
    REDACTOR.add(*settings.meta_app_secrets, settings.admin_token)
    _reset_prometheus_dir(prometheus_dir(settings))
    problem = check_database(settings)
    if problem is not None:
        server.log.error("refusing to start: %s", problem)
        raise SystemExit(1)
    with collector_paused_then_frozen():
        try:
            routing = load_routing(Path(settings.tenants), settings.meta_app_secrets)
        except RoutingRefused as e:
            for err in e.errors:
                server.log.error("%s", err)
            server.log.error("refusing to start: %s", e)
            raise SystemExit(1) from None
        routing_holder.install(routing)
        # The app's modules (Falcon, Jinja2, the admin pages) imported once here, frozen with the routing:
        # each worker, forked at start and after every SIGHUP, starts with them instead of importing them
        # (~40 % of a worker's ~0.45 s boot). The app itself is still built in each worker (no preload).
        import webhook_server.app  # noqa: F401
    reload_status.note(True, len(routing))
    server.log.info("routing loaded: %d tenant(s) from %s", len(routing), settings.tenants)


def on_reload(server: Any) -> None:
    reload_dotenv()  # a changed .env (a rotated Meta app secret) applies, as the README promises
    settings = load_settings()
    previous = routing_holder.current()
    try:
        with collector_paused_then_frozen():
            routing = load_routing(Path(settings.tenants), settings.meta_app_secrets)
    except RoutingRefused as e:
        for err in e.errors:
            server.log.error("%s", err)
        server.log.error("reload refused: %s; keeping the previous routing (%d tenant(s))", e, len(previous))
        reload_status.note(False, len(previous))
        return
    except Exception as e:  # anything unexpected must not take the running routing down
        server.log.error("reload refused: %s; keeping the previous routing (%d tenant(s))",
                         type(e).__name__, len(previous))
        reload_status.note(False, len(previous))
        return
    routing_holder.install(routing)
    reload_status.note(True, len(routing))
    server.log.info("routing reloaded: %d tenant(s)", len(routing))


def worker_exit(server: Any, worker: Any) -> None:
    # Imported here: the master never needs Falcon, and the app exists only in workers.
    from webhook_server.app import shutdown

    shutdown()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get(MULTIPROC_ENV):
        # Imported here, never at module level: see the module docstring.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
