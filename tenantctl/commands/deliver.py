"""`tenantctl deliver`: the delivery worker (delivery/worker.py) as a long-running command.

SIGHUP re-reads the tenant files' delivery destinations (a set that fails to load or check is refused and
the old one stays). Exit codes: 0 after SIGTERM/SIGINT (the attempts in flight are finished first; 1 after
a second one, which stops at once) or, with --until-idle, once nothing is due, no attempt failed and nothing is
left for later (1 otherwise: events waiting for a retry, or held by another worker's claim); 1 for a
configuration error (no
destination, no or bad secret, unmigrated database, tenant files with errors or no tenants directory) or
when another worker holds a SQLite database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from delivery.destinations import PROVIDERS, Destinations, from_settings
from delivery.retry import RetryPolicy
from delivery.signing import BadSecret
from outbound.policy import OutboundBlocked, OutboundPolicy, allow_list, check_url, host_of, is_loopback
from store.bounded import SCRAPE_DEADLINE_S, read_within
from store.delivery import AnotherWorkerRunning, StoppedWaiting, not_due, single_worker, worker_engine
from store.engine import missing_sqlite_file, redact_url
from store.errors import DatabaseNotMigrated
from store.migrate import require_up_to_date
from store.queue_depth import depth_by_provider
from tenancy.escape import printable
from tenancy.loader import LoadedTenant, load_tenants
from tenancy.redact import REDACTOR, RedactingFilter
from tenancy.settings import Settings
from tenantctl.context import Context
from tenantctl.errors import database_to_create, missing_tenants_dir
from webhook_server.boot_signals import hangup_held

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from delivery.worker import Worker

log = logging.getLogger("delivery")


def register(app: typer.Typer) -> None:
    app.command("deliver")(deliver)


def _fail(c: Context, message: str) -> typer.Exit:
    c.err.print(REDACTOR.scrub(f"error: {message}"), markup=False)
    return typer.Exit(1)


class _StoppedAtOnce(SystemExit):
    """A second SIGINT/SIGTERM while the worker finished its attempts in flight: it ends now. A SystemExit, the
    one kind asyncio lets out of a task or a callback (an attempt's `except Exception` would record it)."""


class _Refused(Exception):
    """The destinations cannot be used (tenant files with errors, no destination, a URL the rules refuse).
    Its message is already escaped (tenancy.escape.printable): it is printed and logged as it is."""


def _outbound(c: Context, s: Settings) -> tuple[Destinations, OutboundPolicy]:
    """The destinations (settings and tenant files) and the outbound rules they are checked against."""
    if not c.tenants_dir.exists():  # a single file is a set of one tenant, as serve and validate take it
        # As `serve` refuses it: without the files, every tenant's own destination (`delivery:`) would be dropped
        # and its events sent to the platform-wide URL instead, silently.
        raise _Refused(printable(f"{missing_tenants_dir(c.tenants_dir)} The worker needs the files for each "
                                 "tenant's own destinations (`delivery:`)."))
    # As the webhook server loads them: the files themselves, not the .sops.yaml policy (`validate` checks it).
    loaded = load_tenants([c.tenants_dir], check_config=False)
    if not loaded.ok:
        for f in loaded.errors:
            c.err.print(f.text(), markup=False)
        raise _Refused(printable(f"the tenant files in {c.tenants_dir} have errors (their delivery overrides "
                                 "are needed)"))
    loaded_tenants: list[LoadedTenant] = loaded.tenants
    destinations = from_settings(s, [t.tenant for t in loaded_tenants])
    if not destinations.providers():
        raise _Refused("no destination: set TENANTCTL_DELIVERY_URL_<PROVIDER> (see .env.example), or give a tenant "
                       "its own in its file (`delivery: {hospitable: https://…}`)")
    policy = OutboundPolicy(
        allowed_hosts=allow_list(destinations.urls()),
        allow_loopback_http=s.delivery_allow_loopback_http or s.sandbox,
        connect_timeout_s=min(5.0, s.delivery_timeout_s), timeout_s=s.delivery_timeout_s,
        max_response_bytes=s.delivery_max_response_bytes,
    )
    # Each configured URL is checked where it was written: the setting, or the tenant file's line and field.
    sources = [(f"TENANTCTL_DELIVERY_URL_{p.upper()}", url) for p, url in destinations.platform.items()]
    for lt in loaded_tenants:
        for p in PROVIDERS:
            url = getattr(lt.tenant.delivery, p, None) if lt.tenant.delivery else None
            if url:
                line = lt.where(("delivery", p)).line
                sources.append((f"{lt.path}:{line}: delivery.{p}", url))
    for where, url in sources:
        try:
            check_url(policy, url)
        except OutboundBlocked as e:
            # The setting can only help a refusal of plain http, to a loopback host, while it is off.
            hint = (" (TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP=true allows plain http to a loopback host, for "
                    "sandbox and development)" if str(e).startswith("http:// refused") and is_loopback(host_of(url))
                    and not policy.allow_loopback_http else "")
            raise _Refused(printable(f"{where}: delivery URL refused: {e}{hint}")) from None
    return destinations, policy


def _ignore_stops() -> None:
    """Further SIGTERM/SIGINT do nothing. A handler that does nothing, not SIG_IGN: a signal already received and
    not yet handled would otherwise be reported as 'ignored due to race condition', with a traceback."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _no_op)


def _no_op(signum: int, frame: object) -> None:
    pass


def _left_undelivered(engine: Engine, destinations: Destinations) -> str | None:
    """After `--until-idle` emptied what was due: the events of its providers that are due later, which a script
    draining the queue must not take for delivered. None when there are none."""
    left = not_due(engine, now=datetime.now(UTC), providers=destinations.providers())
    parts = []
    if left.held:
        parts.append(f"{left.held} held by another worker's claim until {_clock(left.held_until)} (a worker "
                     "that died: delivered once its lease ends)")
    if left.waiting:
        parts.append(f"{left.waiting} wait for a retry, the next at {_clock(left.next_try_at)}")
    if not parts:
        return None
    return f"nothing is due now, but not everything is delivered: {'; '.join(parts)} (see `tenantctl webhooks log`)"


def _clock(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _reloader(c: Context, s: Settings, worker: Worker, hup: threading.Event, stop: threading.Event) -> None:
    """On SIGHUP, re-read the tenant files' destinations; a set that fails is refused and the old one stays."""
    while not stop.is_set():
        if not hup.wait(0.5):
            continue
        hup.clear()
        try:
            destinations, policy = _outbound(c, s)
        except _Refused as e:
            log.error("deliver: reload refused, the destinations stay as they were: %s", e)
            continue
        worker.reconfigure(destinations, policy)
        log.info("deliver: reloaded: %d tenant destination(s); delivering %s", len(destinations.tenants),
                 ", ".join(destinations.providers()))


def _lower_priority(nice: int) -> int:
    """At least ``nice`` for the calling thread and the threads it starts afterwards (on Linux niceness is per
    thread, inherited at creation); a niceness already higher (systemd's Nice=, `nice -n`) is kept. Lowering
    one's priority needs no privilege. Returns the thread's niceness."""
    if nice > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    _lower_autogroup(nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


_AUTOGROUP = Path("/proc/self/autogroup")
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def autogroup_nice() -> int | None:
    """The niceness of this process's autogroup, or None where the kernel groups no sessions (sched(7))."""
    try:
        if _AUTOGROUP_ENABLED.read_text().strip() != "1":
            return None
        return int(_AUTOGROUP.read_text().split()[-1])  # "/autogroup-85 nice 0"
    except (OSError, ValueError, IndexError):
        return None


def _lower_autogroup(nice: int) -> None:
    """With autogroup on (sched(7); Linux's default on many distributions, and on this project's CI), the
    scheduler first shares the CPU between sessions, and a thread's niceness orders it only among the threads of
    its own session: measured, a worker at niceness 10 in a session of its own still took as much CPU as the
    webhook server in another (61 % of the server's peak; 21 % with its session at 10). So a worker that leads
    its own session (Docker, `setsid`, the benchmarks) lowers its session's niceness as well. One that shares
    its session (started from a shell beside `serve`) leaves it alone, or the server would be lowered with it.
    Under systemd each service is a cgroup of its own instead: there the unit's CPUWeight= does this."""
    current = autogroup_nice()
    if current is None or nice <= current or os.getsid(0) != os.getpid() or _session_shared():
        return
    with contextlib.suppress(OSError):  # a kernel that refuses leaves the thread niceness, which still holds
        _AUTOGROUP.write_text(str(nice))


def _session_shared() -> bool:
    """Whether another process is in this process's session (and so its autogroup): leading a session is not
    having it alone (`sh -c 'tenantctl serve & exec tenantctl deliver'`, a container's entry point). The worker
    starts no process, so none joins the session later. Where /proc cannot tell, the session counts as shared."""
    me, sid = os.getpid(), os.getsid(0)
    try:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return True
    for pid in pids:
        if pid == me:
            continue
        try:
            # Field 6 of /proc/PID/stat, counted after the command name (which may hold spaces and parentheses).
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 3 and fields[3] == str(sid):
            return True
    return False


def deliver(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=256,
                                                    help="Requests in flight (default: settings).")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, show_default=False,
        help="Serve Prometheus /metrics here (0: a free port). Default: TENANTCTL_DELIVER_METRICS_PORT, else "
             "none.")] = None,
    metrics_addr: Annotated[str | None, typer.Option(
        "--metrics-addr", show_default=False,
        help="Address of the metrics port. Default: TENANTCTL_DELIVER_METRICS_ADDR, else 127.0.0.1.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="SQLite: wait for the running worker to stop.")] = False,
    until_idle: Annotated[bool, typer.Option(
        "--until-idle", help="Exit once nothing is due (1 if an attempt failed or an event is left for later: a "
        "retry, another worker's claim).")] = False,
) -> None:
    """Deliver accepted webhooks to the platform: signed (Standard Webhooks), retried, dead-lettered."""
    # Imported here, not at the top: aiohttp takes ~0.2 s to import, which every other command would pay.
    from delivery.metrics import DeliveryMetrics  # prometheus_client: never imported by the CLI itself
    from delivery.worker import Worker, WorkerConfig, default_worker_id, load_keys
    from outbound.sender import Sender

    c: Context = ctx.obj
    s = c.settings
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.addFilter(RedactingFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        logging.getLogger("alembic").setLevel(logging.WARNING)  # the schema check's "Context impl" lines
    # Every log line and message is scrubbed of them; a bare "whsec_" (an empty entry) is no secret, and masking it
    # would hide the very advice on how to write one.
    REDACTOR.add(*(x for x in s.delivery_secrets if x.get_secret_value().removeprefix("whsec_")))
    if not s.delivery_secrets:
        raise _fail(c, "no delivery secret: set TENANTCTL_DELIVERY_SECRETS (whsec_..., see .env.example)")
    try:
        keys = load_keys([x.get_secret_value() for x in s.delivery_secrets])
    except BadSecret as e:
        raise _fail(c, f"TENANTCTL_DELIVERY_SECRETS: {e}") from None
    try:
        destinations, policy = _outbound(c, s)
    except _Refused as e:
        raise _fail(c, str(e)) from None
    url = s.resolved_database_url
    if (path := missing_sqlite_file(url)) is not None:
        raise _fail(c, printable(database_to_create(path)))
    engine = worker_engine(url, statement_timeout_ms=s.db_statement_timeout_ms or None)
    try:
        require_up_to_date(engine)
    except DatabaseNotMigrated as e:
        engine.dispose()
        raise _fail(c, f"{e} (database {redact_url(url)})") from None
    config = WorkerConfig(
        policy=policy,
        retry=RetryPolicy(max_attempts=s.delivery_max_attempts, max_age=timedelta(seconds=s.delivery_max_age_s),
                          base_delay_s=s.delivery_base_delay_s, max_delay_s=s.delivery_max_delay_s),
        keys=keys, concurrency=concurrency or s.delivery_concurrency, poll_s=s.delivery_poll_s,
    )
    stop, hup, signalled = threading.Event(), threading.Event(), threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        if stop.is_set():  # the second: at once, the attempts in flight left to their lease
            _ignore_stops()  # a third, or one while exiting, must not kill it by the signal instead
            raise _StoppedAtOnce
        stop.set()
        signalled.set()
        # os.write: safe in a handler, which may interrupt a print.
        os.write(2, b"deliver: stopping once the attempts in flight end (a second Ctrl-C or SIGTERM stops at once; "
                    b"their events are then delivered again after their lease)\n")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    if hangup_held():  # one came during the start (tenantctl/__init__.py held it): the reload it asked for
        hup.set()
    try:
        with single_worker(engine, wait=wait, stopped=stop.is_set,
                           waiting=lambda why: c.err.print(printable(f"deliver: {why}"), markup=False)):
            metrics = DeliveryMetrics(
                lambda: read_within(engine, lambda: depth_by_provider(engine), SCRAPE_DEADLINE_S),
                lambda: datetime.now(UTC))
            sender = Sender(policy, max_connections=config.concurrency)
            # The worker's database thread starts here, with the priority the process was given: on SQLite it
            # holds the write lock the webhook server's commits wait for, and a lock holder set aside by the
            # scheduler would only make them wait longer. Every thread started after runs at the lower one.
            worker = Worker(engine, destinations, config, sender, metrics=metrics, worker_id=default_worker_id())
            given = os.getpriority(os.PRIO_PROCESS, 0)
            nice = _lower_priority(s.delivery_nice)
            port_wanted = s.deliver_metrics_port if metrics_port is None else metrics_port
            addr = metrics_addr or s.deliver_metrics_addr
            if port_wanted is not None:
                try:
                    port = metrics.serve(port_wanted, addr)
                except OSError as e:  # taken (another worker on this host), or an address not of this host
                    worker.close()
                    metrics.close()
                    raise _fail(c, printable(
                        f"cannot serve metrics on {addr}:{port_wanted}: {e.strerror or e} (--metrics-port/"
                        "--metrics-addr, TENANTCTL_DELIVER_METRICS_PORT/_ADDR; each worker on a host needs a "
                        "port of its own)")) from None
                c.err.print(f"deliver: metrics on http://{addr}:{port}/metrics", markup=False)
            session = autogroup_nice()
            c.err.print(f"deliver: worker {worker.worker_id} delivering {', '.join(destinations.providers())} "
                        f"({len(destinations.tenants)} tenant destination(s); "
                        f"{config.concurrency} at a time, nice {nice}; database thread nice {given}"
                        f"{'' if session is None else f'; session nice {session}'}; "
                        f"database {redact_url(url)})", markup=False)
            reloader = threading.Thread(target=_reloader, args=(c, s, worker, hup, stop), daemon=True)
            reloader.start()
            at_once = False
            try:
                worker.run(stop, until_idle=until_idle)
            except _StoppedAtOnce:
                at_once = True
                raise _fail(c, "stopped at once on a second signal: the events of the attempts that were in flight "
                               "are delivered again after their lease (at least once, the same webhook-id)") from None
            finally:
                if signalled.is_set():
                    _ignore_stops()  # stopping already: what is left is recording and exiting
                stop.set()
                worker.close(wait=not at_once)
                metrics.close()  # the port is free before the slot is: a worker waiting for both takes over
            c.err.print(f"deliver: stopped ({worker.delivered} delivered, {worker.failed} failed attempts, "
                        f"{worker.rounds} database rounds)", markup=False)
            if until_idle and worker.failed:
                # A run meant to empty the queue that left events to retry or dead did not do its job: say so.
                dead = (f"; {worker.dead} event(s) dead-lettered (`tenantctl webhooks replay --dead` queues them "
                        "again)") if worker.dead else ""
                waiting = worker.failed - worker.dead
                raise _fail(c, f"{worker.failed} delivery attempt(s) failed"
                               f"{f'; {waiting} wait for a retry' if waiting else ''}{dead} "
                               "(see `tenantctl webhooks log`)")
            if until_idle and not signalled.is_set() and (left := _left_undelivered(engine, destinations)):
                raise _fail(c, left)
            if until_idle and not signalled.is_set():
                depths = depth_by_provider(engine)
                if dead_letters := sum(depths[p].dead for p in destinations.providers() if p in depths):
                    # Not a failure of this run (exit 0): an operator's to replay, as `webhooks stats` counts them.
                    c.err.print(f"deliver: {dead_letters} dead-lettered event(s) wait for a replay "
                                "(`tenantctl webhooks replay --dead`)", markup=False)
    except AnotherWorkerRunning as e:
        raise _fail(c, str(e)) from None
    except StoppedWaiting as e:
        c.err.print(printable(f"deliver: {e}"), markup=False)  # nothing was claimed: a clean stop
    finally:
        engine.dispose()
