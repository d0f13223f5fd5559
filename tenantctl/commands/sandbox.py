"""`tenantctl sandbox serve | seed | platform`: the provider emulators on loopback, loaded with drifted live
state, and the fake platform alone.

Rehearse a change safely:
    tenantctl sandbox serve &                          # gunicorn 'sandbox.app:get_app()' on 127.0.0.1:8790
    tenantctl --tenants examples sandbox seed          # PUT /_sandbox/state: the examples, with drift
    tenantctl --tenants examples plan --sandbox        # exit 2: what apply would change
    tenantctl --tenants examples apply --sandbox       # confirm, apply; `plan --sandbox` is then empty

`serve` generates a per-run admin token and writes it to `<state dir>/sandbox-admin-token` (mode 0600;
`platform` to `<state dir>/platform-admin-token`);
`seed` reads it from there (same TENANTCTL_STATE_DIR); so must clients of the fake platform's /_platform/*
admin. A second `serve` (or `platform`) on the same state dir, on another port, takes the token of the one
already running rather than writing a new one over it (tenantctl/run_token.py), so the file opens both; a
second `serve` starts no SMTP server either, and the running one's `sandbox-smtp.port` and `.pem` stay.
`serve` checks the port is free before it takes a token, so a second `serve` on a busy port fails
without touching the running sandbox's; gunicorn's control socket is off (its default path is
shared by every gunicorn of the user). The served sandbox refuses admin calls without the token, any path
with an empty, '.' or '..' segment, and any request whose Host header is not its own loopback address.

Seeding puts the tenants' credentials into the sandbox as its accounts. `seed` keeps them in the running
server's memory; `seed --out FILE` writes a state file (mode 0600) for `serve --state FILE`: keep it out
of git. Tests run the CLI against an in-process sandbox instead: TENANTCTL_SANDBOX_INPROCESS names a state
file that is loaded before the command and saved after it (TENANTCTL_SANDBOX_FAULTS: a FaultConfig as
JSON; TENANTCTL_SANDBOX_LATENCY_S: added latency per call).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import httpx
import typer

from tenantctl.context import Context
from tenantctl.gunicorn_master import run_gunicorn
from tenantctl.run_token import RunToken, RunTokenError, take

INPROCESS_ENV = "TENANTCTL_SANDBOX_INPROCESS"
FAULTS_ENV = "TENANTCTL_SANDBOX_FAULTS"
LATENCY_ENV = "TENANTCTL_SANDBOX_LATENCY_S"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
ADMIN_KEY_FILE = "sandbox-admin-token"  # a file name, not a secret
# The fake platform alone has a file of its own: beside a `serve` on the same state dir, it must not replace the
# token that `serve`'s own clients (`sandbox seed`) read.
PLATFORM_KEY_FILE = "platform-admin-token"
SMTP_PORT_FILE = "sandbox-smtp.port"  # sandbox/smtp.py's PORT_FILE (the sandbox is not imported by ordinary runs)
SHUTDOWN_TIMEOUT_S = 5  # how long a stopping sandbox waits for its answers in progress (as `sandbox platform`)


def token_path(c: Context) -> Path:
    return c.settings.state_dir / ADMIN_KEY_FILE


def _take_token(c: Context, path: Path) -> RunToken:
    """`take` the token at ``path``, or exit 1 saying why not. Only the state dir is resolved, never the file's own
    name: a symlink planted there is refused by `take`, not followed to its target."""
    try:
        return take(path.parent.resolve() / path.name)
    except RunTokenError as e:
        c.err.print(f"error: {e}", markup=False)
        raise typer.Exit(1) from None


def _token_said(token: RunToken, kind: str) -> str:
    if token.reused:
        return f"{kind} admin token: another {kind} runs on this state dir; sharing its token in {token.path}"
    return f"{kind} admin token written to {token.path}"


sandbox_app = typer.Typer(help="Local emulators of every provider API, for rehearsals and tests.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")


@contextlib.contextmanager
def inprocess_transport() -> Iterator[httpx.BaseTransport | None]:
    """The in-process sandbox named by $TENANTCTL_SANDBOX_INPROCESS (tests), else None (real network).

    The world is loaded from the state file before the command and written back after it, so a series of
    CLI invocations sees one continuous sandbox.
    """
    path = os.environ.get(INPROCESS_ENV)
    if not path:
        yield None
        return
    # Imported only here: the sandbox (and falcon) stay out of ordinary CLI runs.
    from sandbox.faults import FaultConfig
    from sandbox.smtp import SandboxSmtp
    from sandbox.transport import sandbox_transport
    from sandbox.world import World

    state = Path(path)
    world = World.from_json(state.read_text()) if state.is_file() and state.stat().st_size else World()
    faults_json = os.environ.get(FAULTS_ENV)
    faults = FaultConfig.from_dict(json.loads(faults_json)) if faults_json else None
    latency = float(os.environ.get(LATENCY_ENV, "0") or 0)
    transport = sandbox_transport(world, faults=faults, latency_s=latency)
    smtp = SandboxSmtp(world, Path(os.environ.get("TENANTCTL_STATE_DIR", ".state"))).start()
    try:
        yield transport
    finally:
        smtp.stop()
        state.write_text(world.to_json())
        calls = state.with_suffix(".calls.json")
        calls.write_text(json.dumps(world.calls.to_dict()))


def _loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if host not in LOOPBACK:
        raise typer.BadParameter(f"the sandbox listens on loopback only, not {host!r}",
                                 param_hint="TENANTCTL_SANDBOX_URL")
    return host, port


def _port_busy(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (a bind test, as gunicorn binds: SO_REUSEADDR), else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.strerror or type(e).__name__
    return None


@sandbox_app.command("serve")
def serve(
    ctx: typer.Context,
    *,
    port: Annotated[int | None, typer.Option(help="Port (default: from TENANTCTL_SANDBOX_URL).")] = None,
    state: Annotated[Path | None, typer.Option(help="A state file to start from (see `sandbox seed --out`).")]
    = None,
    threads: Annotated[int, typer.Option(help="gunicorn threads (one worker: one world).")] = 8,
    worker_class: Annotated[Literal["gthread", "gevent"], typer.Option(
        "--worker-class", help="gunicorn worker class: gevent serves many slow answers (the fake platform's "
        "delay) for less CPU than threads.")] = "gthread",
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="One line per request on stdout.")] = True,
) -> None:
    """Run the emulators on loopback: gunicorn 'sandbox.app:get_app()', one worker (one world), threads."""
    c: Context = ctx.obj
    host, default_port = _loopback(c.settings.sandbox_url)
    bind = f"[{host}]:{port or default_port}" if ":" in host else f"{host}:{port or default_port}"
    env = dict(os.environ)
    if state is not None:
        env["TENANTCTL_SANDBOX_STATE"] = str(state.resolve())
    if (busy := _port_busy(host, port or default_port)) is not None:
        # Before the token: rewriting it would lock the running sandbox's own clients out.
        c.err.print(f"error: cannot listen on {bind} ({busy}): another sandbox or program uses it; pick "
                    "another --port", markup=False)
        raise typer.Exit(1)
    token = _take_token(c, token_path(c))  # its lock is inherited by gunicorn, held while the sandbox runs
    env["TENANTCTL_SANDBOX_TOKEN_FILE"] = str(token.path)
    env["TENANTCTL_SANDBOX_BIND"] = bind
    # As the token: the SMTP port and certificate files are the running sandbox's while it runs (sandbox/app.py).
    env["TENANTCTL_SANDBOX_SMTP"] = "0" if token.reused else "1"
    c.err.print(f"{_token_said(token, 'sandbox')} (for `tenantctl sandbox seed`)", markup=False)
    if token.reused:
        c.err.print(f"sandbox SMTP: the running sandbox's (its port in {token.path.parent / SMTP_PORT_FILE}); this "
                    "one starts none", markup=False)
    c.err.print(f"sandbox listening on http://{bind} (Ctrl-C to stop); use --sandbox or TENANTCTL_SANDBOX=1")
    cmd = [sys.executable, "-m", "gunicorn", "sandbox.app:get_app()", "--config", "python:sandbox.gunicorn_conf",
           "--bind", bind, "--workers", "1",
           "--worker-class", worker_class, "--no-control-socket",  # its default (~/.gunicorn) is per user
           # SIGTERM waits this long for answers in progress (the fake platform's delay, a lost-response fault),
           # as `sandbox platform` does, not gunicorn's 30 s.
           "--graceful-timeout", str(SHUTDOWN_TIMEOUT_S)]
    cmd += ["--threads", str(threads)] if worker_class == "gthread" else ["--worker-connections", "1000"]
    if access_log:
        cmd += ["--access-logfile", "-"]
    sys.stdout.flush()
    sys.stderr.flush()
    # Become gunicorn's master (as `tenantctl serve` does): SIGTERM and Ctrl-C reach it directly, so stopping the
    # command never leaves a server running on the port.
    os.environ.update(env)
    run_gunicorn(cmd)


@sandbox_app.command("platform")
def platform(
    ctx: typer.Context,
    *,
    port: Annotated[int, typer.Option(help="Port on the sandbox's loopback host (the host of TENANTCTL_SANDBOX_URL, "
                                           "127.0.0.1 by default).")] = 8791,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log",
                                             help="One line per request on stdout.")] = False,
) -> None:
    """Run only the fake platform (where `tenantctl deliver` hands events), on aiohttp: lighter than `serve`.

    The same endpoints, modes and admin token as the platform `serve` mounts (sandbox/platform_server.py):
    POST /platform/{name} receives deliveries, checked against TENANTCTL_DELIVERY_SECRETS; PUT /_platform/mode
    makes it fail, answer slowly or answer 503 for a while; GET /_platform/received lists what arrived. The
    /_platform/* endpoints need `Authorization: Bearer` with the token in <state dir>/platform-admin-token,
    written at start (docs/delivery.md, "The sandbox's fake platform")."""
    from sandbox.platform import SECRETS_ENV, Platform
    from sandbox.platform_server import run

    c: Context = ctx.obj
    host, _ = _loopback(c.settings.sandbox_url)
    if (busy := _port_busy(host, port)) is not None:
        c.err.print(f"error: cannot listen on {host}:{port} ({busy}): pick another --port", markup=False)
        raise typer.Exit(1)
    token = _take_token(c, c.settings.state_dir / PLATFORM_KEY_FILE)  # held until this process ends
    c.err.print(_token_said(token, "platform"), markup=False)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6: a URL that can be pasted
    c.err.print(f"fake platform listening on http://{netloc}/platform/{{name}} (Ctrl-C to stop)", markup=False)
    run(Platform(os.environ.get(SECRETS_ENV, "")), host=host, port=port, admin_token=token.value,
        access_log=access_log)


@sandbox_app.command("seed")
def seed(
    ctx: typer.Context,
    *,
    out: Annotated[Path | None,
                   typer.Option("--out", help="Write a state file instead of PUTting it.")] = None,
    clean: Annotated[bool, typer.Option(help="Seed the desired state exactly, without drift.")] = False,
) -> None:
    """Load the tenants' live state into the sandbox, with drift to reconcile (see sandbox.seed)."""
    from sandbox.seed import seed_world

    c: Context = ctx.obj
    result = c.load()
    if not result.ok:
        for finding in result.errors:
            c.echo(finding.text())
        raise typer.Exit(1)
    world = seed_world([t.tenant for t in result.tenants], domain=c.settings.domain, drift=not clean)
    body = world.to_json()
    if out is not None:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        c.echo(f"wrote sandbox state for {len(result.tenants)} tenant(s) to {out} (holds their credentials: "
               "keep it out of git)")
        return
    _loopback(c.settings.sandbox_url)
    url = c.settings.sandbox_url.rstrip("/") + "/_sandbox/state"
    try:
        token = token_path(c).read_text().strip()
    except OSError:
        c.err.print(f"error: no sandbox admin token at {token_path(c)}: start the sandbox with `tenantctl "
                    "sandbox serve` (with the same TENANTCTL_STATE_DIR)", markup=False)
        raise typer.Exit(1) from None
    try:
        resp = httpx.put(url, content=body, headers={"content-type": "application/json",
                                                     "authorization": f"Bearer {token}"},
                         timeout=10, trust_env=False)
    except httpx.HTTPError as e:
        c.err.print(f"error: cannot reach the sandbox at {c.settings.sandbox_url} ({type(e).__name__}): "
                    "start it with `tenantctl sandbox serve`")
        raise typer.Exit(1) from None
    if resp.status_code == 401:
        c.err.print(f"error: the sandbox refused the admin token in {token_path(c)}: it belongs to another "
                    "run; restart `tenantctl sandbox serve` or use its TENANTCTL_STATE_DIR", markup=False)
        raise typer.Exit(1)
    if resp.status_code != 200:
        c.err.print(f"error: the sandbox refused the state: HTTP {resp.status_code}")
        raise typer.Exit(1)
    c.echo(f"seeded the sandbox at {c.settings.sandbox_url} with {len(result.tenants)} tenant(s)"
           + ("" if clean else ", with drift to reconcile"))
