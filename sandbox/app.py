"""The sandbox as one Falcon app: every provider mounted under its prefix, plus admin endpoints.

Serve it with `gunicorn 'sandbox.app:get_app()'`; `TENANTCTL_SANDBOX_STATE` names a JSON state file to
start from. Admin endpoints (not logged as calls):
  GET|PUT /_sandbox/state   dump | replace the world        POST /_sandbox/reset    empty world
  GET|PUT /_sandbox/faults  served-mode fault config         POST /_sandbox/nuki/settle
  GET|DELETE /_sandbox/calls  the call log                   GET /_sandbox/healthz   liveness (open)

Served, the admin endpoints need `Authorization: Bearer <token>`: the per-run token `tenantctl sandbox
serve` generates and writes to a 0600 file named by `TENANTCTL_SANDBOX_TOKEN_FILE` (the world holds every
seeded tenant's tokens); so do the fake platform's /_platform/* endpoints. The guard decides by the routed
resource (an `AdminResource`), not by the path's spelling, and refuses a path with an empty, '.' or '..'
segment (`//_sandbox/state`, `/%2F_sandbox/state`) with 400. Without that file the token is random and
unknown: admin is closed. Every request
must carry a Host header naming this machine (localhost, 127.0.0.0/8, [::1]), and the served port when
`TENANTCTL_SANDBOX_BIND` gives it: a web page whose name was rebound to 127.0.0.1 sends its own Host and
is refused (421), so a browser cannot read or wipe the world.
The fake platform (delivery's destination) is mounted too: /platform/{name}, /_platform/* (sandbox/platform.py).
"""

from __future__ import annotations

import hmac
import json
import os
import pathlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import falcon

from sandbox import beds24, hospitable, meta, nuki, platform, twon
from sandbox.calls import Call
from sandbox.common import AdminResource, host_is_local, path_is_normal, send_json
from sandbox.faults import FaultConfig
from sandbox.smtp import SandboxSmtp
from sandbox.world import World

STATE_ENV = "TENANTCTL_SANDBOX_STATE"
TOKEN_FILE_ENV = "TENANTCTL_SANDBOX_TOKEN_FILE"
BIND_ENV = "TENANTCTL_SANDBOX_BIND"
SMTP_ENV = "TENANTCTL_SANDBOX_SMTP"  # "0": start no SMTP server (`sandbox serve` beside a running one: its is used)
FAULT_HEADER = "x-sandbox-fault"  # set by the in-process transport for a "lost-response" call
_PREFIXES = {"meta": "meta", "nuki": "nuki", "hospitable": "hospitable", "beds24": "beds24", "2n": "2n"}


def provider_of(path: str) -> str | None:
    return _PREFIXES.get(path.lstrip("/").split("/", 1)[0])


def fault_response(world: World, provider: str, kind: str, retry_after_s: float) -> tuple[
        int, dict[str, str], bytes]:
    """The provider's own shape for an injected 429 or 500."""
    builders: dict[str, Callable[[str, float], tuple[int, dict[str, str], bytes]]] = {
        "meta": lambda k, r: meta.fault_response(k, r, world.meta.rate_limit_http_status),
        "nuki": nuki.fault_response, "hospitable": hospitable.fault_response,
        "beds24": beds24.fault_response, "2n": twon.fault_response,
    }
    return builders[provider](kind, retry_after_s)


class _Gate:
    """Serialises provider requests on the world's lock, injects served-mode faults, logs calls."""

    def __init__(self, world: World) -> None:
        self.world = world

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        provider = provider_of(req.path)
        req.context.provider = provider
        req.context.locked = False
        req.context.fault = req.get_header(FAULT_HEADER)
        if provider is None:
            return
        injector = self.world.fault_injector
        kind = injector.decide(provider, req.method, req.path) if injector else None
        if kind is not None and injector is not None:
            req.context.fault = kind
            if kind in ("429", "500"):
                status, headers, body = fault_response(
                    self.world, provider, kind, injector.config.retry_after_s)
                _respond(resp, status, headers, body)
                return
            if kind in ("timeout", "reset"):
                # Hang past any sane client timeout, or fail like a proxy whose upstream dropped us.
                if kind == "timeout":
                    time.sleep(injector.config.served_timeout_s)
                _respond(resp, 504 if kind == "timeout" else 502, {"content-type": "text/plain"},
                         b"Gateway Timeout" if kind == "timeout" else b"Bad Gateway")
                return
        self.world.lock.acquire()
        req.context.locked = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         req_succeeded: bool) -> None:
        if getattr(req.context, "locked", False):
            req.context.locked = False
            self.world.lock.release()
        provider = getattr(req.context, "provider", None)
        if provider is None:
            return
        fault = getattr(req.context, "fault", None)
        status = int(resp.status_code)
        if fault == "lost-response" and self.world.fault_injector is not None:
            # Served mode: the write happened; the client waits in vain.
            time.sleep(self.world.fault_injector.config.served_timeout_s)
        self.world.calls.record(Call(provider, req.method, req.path, status, fault))


class _Guard:
    """Admin resources need the run's token; every request needs a normalised path and (served mode) a
    local Host header."""

    def __init__(self, token: str | None, check_host: bool, port: int | None) -> None:
        self.token, self.check_host, self.port = token, check_host, port

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.check_host and not host_is_local(req.get_header("Host") or "", self.port):
            _respond(resp, 421, {"content-type": "text/plain"},
                     b"Misdirected Request: this sandbox answers only to its own loopback address")
            return
        if not path_is_normal(req.path, req.env.get("RAW_URI") or req.env.get("REQUEST_URI") or ""):
            _respond(resp, 400, {"content-type": "text/plain"},
                     b"Bad Request: the path is not normalised (no empty, '.', '..' or encoded '/' segments)")

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: object,
                         params: dict[str, Any]) -> None:
        if resp.complete or self.token is None or not isinstance(resource, AdminResource):
            return
        given = req.get_header("Authorization") or ""
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            _respond(resp, 401, {"content-type": "text/plain", "WWW-Authenticate": "Bearer"},
                     b"admin endpoints need the sandbox's token (see `tenantctl sandbox serve`)")


class HealthResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, 200, {"ok": True})


def _respond(resp: falcon.Response, status: int, headers: dict[str, str], body: bytes) -> None:
    resp.status = status
    resp.data = body
    for name, value in headers.items():
        if name.lower() == "content-type":
            resp.content_type = value
        else:
            resp.set_header(name, value)
    resp.complete = True


class StateResource(AdminResource):
    def __init__(self, world: World) -> None:
        self.world = world

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, 200, self.world.to_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            new = World.from_dict(json.loads(req.bounded_stream.read()))
        except (ValueError, TypeError, KeyError) as exc:
            raise falcon.HTTPBadRequest(title="invalid state", description=str(exc)) from exc
        self.world.replace_with(new)
        send_json(resp, 200, self.world.to_dict())


class ResetResource(AdminResource):
    def __init__(self, world: World) -> None:
        self.world = world

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.world.reset()
        self.world.calls.clear()
        resp.status = 204


class FaultsResource(AdminResource):
    def __init__(self, world: World) -> None:
        self.world = world

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        config = self.world.faults
        send_json(resp, 200, None if config is None else config.to_dict())

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            data: Any = json.loads(req.bounded_stream.read() or b"null")
            config = None if data is None else FaultConfig.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise falcon.HTTPBadRequest(title="invalid fault config", description=str(exc)) from exc
        self.world.set_faults(config)
        send_json(resp, 200, None if config is None else config.to_dict())


class CallsResource(AdminResource):
    def __init__(self, world: World) -> None:
        self.world = world

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send_json(resp, 200, self.world.calls.to_dict())

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.world.calls.clear()
        resp.status = 204


class NukiSettleResource(AdminResource):
    def __init__(self, world: World) -> None:
        self.world = world

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self.world.lock:
            self.world.nuki.settle()
        resp.status = 204


def create_app(world: World, *, admin_token: str | None = None, check_host: bool = False,
               port: int | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """`admin_token` None leaves admin open: for the in-process transport only (no socket). Served,
    `get_app` always sets a token and checks the Host header."""
    middleware: list[Any] = [_Guard(admin_token, check_host, port), _Gate(world)]  # the guard answers first
    app = falcon.App(middleware=middleware)
    meta.register(app, lambda: world.meta)
    nuki.register(app, lambda: world.nuki)
    hospitable.register(app, lambda: world.hospitable)
    beds24.register(app, lambda: world.beds24)
    twon.register(app, lambda: world.twon)
    app.add_route("/_sandbox/state", StateResource(world))
    app.add_route("/_sandbox/reset", ResetResource(world))
    app.add_route("/_sandbox/faults", FaultsResource(world))
    app.add_route("/_sandbox/calls", CallsResource(world))
    app.add_route("/_sandbox/nuki/settle", NukiSettleResource(world))
    app.add_route("/_sandbox/healthz", HealthResource())
    platform.register(app)  # the fake platform `tenantctl deliver` hands events to (sandbox/platform.py)
    return app


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    """gunicorn entry point: an empty world, or the one saved in $TENANTCTL_SANDBOX_STATE; the admin
    token from $TENANTCTL_SANDBOX_TOKEN_FILE (else a random one nobody knows), the port from
    $TENANTCTL_SANDBOX_BIND (host:port); an SMTP server unless $TENANTCTL_SANDBOX_SMTP is 0."""
    path = os.environ.get(STATE_ENV)
    world = World.from_json(pathlib.Path(path).read_text()) if path else World()
    # The SMTP emulator lives as long as the worker; `tenantctl health --sandbox` finds it via the state dir. A second
    # sandbox on that state dir starts none: its port and certificate files would replace the running one's (and
    # name a dead server once it stopped), as a fresh token would have replaced the running one's token.
    if os.environ.get(SMTP_ENV) != "0":
        SandboxSmtp(world, pathlib.Path(os.environ.get("TENANTCTL_STATE_DIR", ".state"))).start()
    token_file = os.environ.get(TOKEN_FILE_ENV)
    token = pathlib.Path(token_file).read_text().strip() if token_file else ""
    bind = os.environ.get(BIND_ENV, "")
    port = bind.rpartition(":")[2]
    return create_app(world, admin_token=token or secrets.token_urlsafe(32), check_host=True,
                      port=int(port) if port.isdigit() else None)
