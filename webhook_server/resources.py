"""Falcon resources: thin adapters from a request to the pipeline and the operator endpoints."""

from __future__ import annotations

import threading
import time

import falcon

from store.errors import DatabaseUnavailable
from store.webhook_log import EventStore
from webhook_server.client_address import TrustedProxies, addresses
from webhook_server.metrics import Metrics
from webhook_server.pipeline import Inbound, Pipeline, Reply
from webhook_server.routing import Routing
from webhook_server.storage import LogReader

_FORWARDED = ("x-forwarded-for", "x-real-ip")


def _inbound(req: falcon.Request, provider: str, slug: str, trusted: TrustedProxies) -> Inbound:
    try:
        length = req.content_length
    except falcon.HTTPError:
        length = None  # unparseable: the capped read still bounds what we take
    query = {k: v for k, v in req.params.items() if isinstance(v, str)}
    # Without a Content-Length (chunked), Falcon's bounded stream reads nothing; the server's own input
    # stream ends at the end of the body, and the pipeline caps the read either way.
    read = req.bounded_stream.read if length is not None else req.stream.read
    headers = {k.lower(): v for k, v in req.headers.items() if k.lower() not in _FORWARDED}
    # The pipeline logs "peer", "client" and forwarded headers only as client_address decided.
    headers.update(addresses(req.remote_addr, {k: req.headers.get(k.upper(), "") for k in _FORWARDED
                                               if req.headers.get(k.upper()) is not None}, trusted))
    return Inbound(provider, slug, headers, length, read, query)


# A refused body is read and thrown away up to this much (and this long), so that a client that writes
# its whole body before reading (Python's http.client, many SDKs) receives the 413 instead of a reset.
MAX_DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_CHUNK = 256 * 1024


def _drain(req: falcon.Request, deadline_s: float) -> None:
    try:
        length = req.content_length
    except falcon.HTTPError:
        length = None
    if length is not None and length > MAX_DRAIN_BYTES:
        return  # too much to be worth it: the connection is closed on the sender
    stream = req.bounded_stream if length is not None else req.stream
    read, until = 0, time.monotonic() + deadline_s
    try:
        while read < MAX_DRAIN_BYTES and time.monotonic() < until:
            chunk = stream.read(DRAIN_CHUNK)
            if not chunk:
                return
            read += len(chunk)
    except OSError:
        return  # the sender gave up: nothing to answer anymore


def _send(resp: falcon.Response, reply: Reply) -> None:
    resp.status = reply.status
    resp.content_type = reply.content_type
    resp.data = reply.body


class WebhookResource:
    """`POST /api/webhooks/{provider}/t/{slug}`, one instance per provider URL segment."""

    def __init__(self, pipeline: Pipeline, url_provider: str, trusted: TrustedProxies | None = None) -> None:
        self.pipeline = pipeline
        self.url_provider = url_provider
        self.trusted = trusted or TrustedProxies.parse("127.0.0.1")
        self.drain_s = 10.0

    def on_post(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        reply = self.pipeline.post(_inbound(req, self.url_provider, slug, self.trusted))
        if reply.status == 413:
            _drain(req, self.drain_s)
            resp.set_header("Connection", "close")
        _send(resp, reply)


class WhatsAppResource(WebhookResource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, slug: str) -> None:
        _send(resp, self.pipeline.handshake(_inbound(req, self.url_provider, slug, self.trusted)))


class WhatsAppAppResource:
    """`POST/GET /api/webhooks/wa`: the Meta app's default callback URL, routed by WABA/phone-number ID."""

    def __init__(self, pipeline: Pipeline, trusted: TrustedProxies | None = None) -> None:
        self.pipeline = pipeline
        self.trusted = trusted or TrustedProxies.parse("127.0.0.1")

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.pipeline.post_app(_inbound(req, "wa", "", self.trusted)))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _send(resp, self.pipeline.handshake_app(_inbound(req, "wa", "", self.trusted)))


class HealthResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/plain"
        resp.text = "ok"


class ReadyResource:
    """Ready when the routing is loaded, the event store's writer is not stuck or failing, and the
    database answers a ping within ``timeout_s``. Never hangs: the ping runs on its own thread (a
    greenlet under gevent) and at most one runs at a time, so a database that never answers costs one
    waiting ping, not one per probe. 503 names the reason in ``database``."""

    def __init__(self, routing: Routing, reader: LogReader | None, store: EventStore | None = None,
                 timeout_s: float = 2.0) -> None:
        self.routing = routing
        self.reader = reader
        self.store = store
        self.timeout_s = timeout_s
        self._ping: threading.Thread | None = None
        self._ping_error: str | None = None

    def _check_database(self) -> str:
        problem = getattr(self.store, "problem", None)  # the group-commit store knows its writer's state
        why: str | None = problem() if problem is not None else None
        if why is not None:
            return why
        if self.reader is None:
            return "not configured"
        if self._ping is not None and self._ping.is_alive():
            return "unreachable: the previous check is still waiting for the database"
        done = threading.Event()
        self._ping_error = None

        def ping(reader: LogReader = self.reader) -> None:
            try:
                reader.ping()
            except DatabaseUnavailable:
                self._ping_error = "unreachable"
            finally:
                done.set()

        self._ping = threading.Thread(target=ping, name="readyz-ping", daemon=True)
        self._ping.start()
        if not done.wait(self.timeout_s):
            return f"unreachable: no answer within {self.timeout_s:g}s"
        return self._ping_error or "ok"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        db = self._check_database()
        ready = self.routing.loaded and db == "ok"
        resp.status = 200 if ready else 503
        resp.media = {"ready": ready, "tenants": len(self.routing), "routing_loaded": self.routing.loaded,
                      "database": db}


class MetricsResource:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = self.metrics.content_type
        resp.data = self.metrics.render()


