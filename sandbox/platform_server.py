"""The fake platform alone, on aiohttp's server: `tenantctl sandbox platform`.

The same :class:`sandbox.platform.Platform` that `sandbox serve` mounts beside the provider emulators (signature
check, record, modes), on a lighter server: a delivery costs it ~0.21 ms of CPU against ~0.50 ms under
gunicorn and Falcon (wrk, 32 connections, 900-byte POSTs, one process each; 2026-12-01). The benchmarks and
the delivery tests use it: the platform stands for another machine, and the less it takes of the cores the
measured worker and server share, the truer the measure. aiohttp is already the worker's HTTP client.

Endpoints and protection as in the sandbox (sandbox/app.py):
  POST /platform/{name}                     one delivery (answered 204, 401, 5xx as the mode says)
  GET|DELETE /_platform/received            admin: the deliveries recorded | clear them
  GET|PUT /_platform/mode                   admin: how to answer (sandbox/platform.py, ``Mode``)
  GET /_platform/body/{webhook_id}          admin: the last body delivered under that id
  GET /_sandbox/healthz                     {"ok": true}
Admin endpoints need the run's token (``Authorization: Bearer``); every request needs a normalised path and a
Host header naming the server's own loopback address and port (421 otherwise, against DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.log import access_logger

from sandbox.common import host_is_local, path_is_normal
from sandbox.platform import Platform
from tenancy.escape import printable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The largest delivery body taken (bytes): above the webhook server's own limit, so every stored event fits.
MAX_BODY = 16 * 1024 * 1024


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def create_app(platform: Platform, *, admin_token: str, port: int | None) -> web.Application:
    """The platform's aiohttp application; ``port`` is the one a request's Host header must name."""
    admin_header = f"Bearer {admin_token}".encode()
    closing: list[bool] = []  # not empty once the server stops
    delayed: set[asyncio.Task[Any]] = set()  # the deliveries in the mode's delay

    async def on_shutdown(app: web.Application) -> None:
        closing.append(True)
        for task in delayed:
            task.cancel()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not host_is_local(request.headers.get("Host", ""), port):
            return web.Response(status=421, text="Misdirected Request: this platform answers only to its own "
                                                 "loopback address")
        if not path_is_normal(request.path, request.raw_path):
            return web.Response(status=400, text="Bad Request: the path is not normalised (no empty, '.', '..' "
                                                 "or encoded '/' segments)")
        if request.path.startswith("/_platform/"):
            # One Authorization header, compared as the bytes sent: aiohttp decodes a header's bytes that are no
            # UTF-8 to surrogates, which a plain encode() refuses (a 500, not a 401); and two headers are refused, as
            # the Falcon-mounted platform refuses them (its server joins them into one value).
            sent = request.headers.getall("Authorization", [])
            given = sent[0].encode("utf-8", "surrogateescape") if len(sent) == 1 else b""
            if not hmac.compare_digest(given, admin_header):
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"},
                                    text="admin endpoints need the platform's token (see `tenantctl sandbox "
                                         "platform`)")
        return await handler(request)

    async def deliver(request: web.Request) -> web.Response:
        body = await request.read()
        mode, fail = platform.draw()
        if mode.delay_s:
            # A delay ends when the server stops (SIGTERM): aiohttp would wait for it twice over its shutdown
            # timeout. The delivery is answered 503, unrecorded, as a platform going down answers it. (A plain
            # sleep, cancelled then: waiting on an event with a timeout would double the delay's CPU.)
            task = cast("asyncio.Task[Any]", asyncio.current_task())  # a handler runs in a task of its own
            delayed.add(task)
            try:
                await asyncio.sleep(mode.delay_s)
            except asyncio.CancelledError:
                if not closing:
                    raise
            finally:
                delayed.discard(task)
        if closing:
            return web.Response(status=503, text="the platform is stopping")
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, extra = platform.answer(request.match_info["name"], headers, body, mode, fail)
        return web.Response(status=status, headers=extra)

    async def received(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            platform.clear()
            return web.Response(status=204)
        return _json(200, platform.received_list())

    async def mode(request: web.Request) -> web.Response:
        if request.method == "PUT":
            try:
                return _json(200, platform.set_mode(await request.read()).to_dict())
            except ValueError as exc:
                return _json(400, {"title": "invalid mode", "description": str(exc)})
        return _json(200, platform.mode.to_dict())

    async def body(request: web.Request) -> web.Response:
        found = platform.body(request.match_info["webhook_id"])
        if found is None:
            return _json(404, {"title": "404 Not Found"})
        return web.Response(body=found, content_type="application/octet-stream")

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"ok": True})

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/platform/{name}", deliver)
    app.router.add_route("GET", "/_platform/received", received)
    app.router.add_route("DELETE", "/_platform/received", received)
    app.router.add_route("GET", "/_platform/mode", mode)
    app.router.add_route("PUT", "/_platform/mode", mode)
    app.router.add_get("/_platform/body/{webhook_id}", body)
    app.router.add_get("/_sandbox/healthz", healthz)
    return app


class _PrintableFormatter(logging.Formatter):
    """One line per request whatever the client sent (tenancy.escape.printable: no forged lines, no escapes)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def run(platform: Platform, *, host: str, port: int, admin_token: str, access_log: bool) -> None:
    """Serve until SIGINT or SIGTERM (aiohttp's run_app stops cleanly on either); ``access_log``: one line per
    request on stdout."""
    app = create_app(platform, admin_token=admin_token, port=port)
    if access_log:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_PrintableFormatter("%(message)s"))
        access_logger.addHandler(handler)
        access_logger.setLevel(logging.INFO)
        access_logger.propagate = False
    web.run_app(app, host=host, port=port, print=None, access_log=access_logger if access_log else None,
                handle_signals=True, shutdown_timeout=5)
