"""Falcon resources: thin adapters from a request to the pipeline and the operator endpoints."""

from __future__ import annotations

import hmac
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any, get_args

import falcon

from store.errors import DatabaseUnavailable
from store.schema import DELIVERY_STATES
from store.webhook_log import EventStore, LogRow, Outcome
from webhook_server.client_address import TrustedProxies, addresses
from webhook_server.metrics import Metrics
from webhook_server.pipeline import Inbound, Pipeline, Reply
from webhook_server.routing import Routing
from webhook_server.storage import LogReader

MAX_PAGE = 1000
OUTCOMES: tuple[str, ...] = get_args(Outcome)


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


def _when(req: falcon.Request, name: str) -> datetime | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise falcon.HTTPBadRequest(description=f"{name}: use an ISO 8601 time") from None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        return value.astimezone(UTC)  # 0001-01-01T00:00+23:59 is before the first representable UTC time
    except OverflowError:
        raise falcon.HTTPBadRequest(description=f"{name}: out of range (years 0001-9999 in UTC)") from None


# The store keeps accepted bodies whole (they are delivered on); a page of the log view shows their start.
VIEW_BODY_CHARS = 65_536


def _row_json(r: LogRow) -> dict[str, Any]:
    body = r.body
    return {
        "id": r.id, "received_at": r.received_at.isoformat(), "tenant": r.tenant, "provider": r.provider,
        "outcome": r.outcome, "status_code": r.status_code, "reason": r.reason, "event_id": r.event_id,
        "headers": r.headers, "body_size": r.body_size, "latency_ms": r.latency_ms,
        "body": body[:VIEW_BODY_CHARS] if body is not None else None,
        "body_truncated": body is not None and len(body) > VIEW_BODY_CHARS,
        "delivery_state": r.delivery_state, "delivery_attempts": r.attempts, "delivery_last_status": r.last_status,
        "repeats": r.repeats,
    }


_LOG_PARAMS = frozenset({"tenant", "provider", "outcome", "state", "since", "until", "limit", "cursor"})


class AdminLogResource:
    """`GET /admin/webhook-logs`: the webhook log as JSON, newest first, paged by an opaque cursor.

    Filters: tenant, provider, outcome, state (a delivery state, repeatable: ``state=pending&state=retrying``),
    since (inclusive), until (exclusive), limit (≤ 1000), cursor. An unknown parameter or value is a 400 naming
    it: a misspelt filter (``?stat=dead``) answered with the unfiltered log reads as if it had matched.
    Needs `Authorization: Bearer <TENANTCTL_ADMIN_TOKEN>`; when no token is configured the endpoint does
    not exist (404), so an unconfigured server exposes nothing.
    """

    def __init__(self, token: bytes | None, reader: LogReader | None) -> None:
        self._token = token
        self.reader = reader

    def __repr__(self) -> str:
        return "AdminLogResource(token=(sensitive))"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._token is None or self.reader is None:
            raise falcon.HTTPNotFound()
        auth = req.get_header("Authorization") or ""
        scheme, _, given = auth.partition(" ")
        try:
            given_bytes = given.strip().encode("ascii")
        except UnicodeEncodeError:
            given_bytes = b""
        if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, self._token):
            raise falcon.HTTPUnauthorized(challenges=["Bearer"])
        unknown = sorted(set(req.params) - _LOG_PARAMS)
        if unknown:
            named = ", ".join(repr(k[:40]) for k in unknown)
            raise falcon.HTTPBadRequest(description=f"unknown parameter {named}: the parameters are "
                                                    f"{', '.join(sorted(_LOG_PARAMS))}")
        outcome = req.get_param("outcome")
        if outcome is not None and outcome not in OUTCOMES:
            raise falcon.HTTPBadRequest(description=f"outcome: one of {', '.join(OUTCOMES)}")
        states = req.get_param_as_list("state") or []
        if any(s not in DELIVERY_STATES for s in states):
            raise falcon.HTTPBadRequest(description=f"state: one of {', '.join(DELIVERY_STATES)} (repeatable)")
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_PAGE, default=100)
        cursor = req.get_param_as_int("cursor", min_value=1, max_value=2**63 - 1)  # ids are BIGINT
        try:
            rows, next_cursor = self.reader.query(
                tenant=req.get_param("tenant"), provider=req.get_param("provider"),
                outcome=outcome,  # type: ignore[arg-type]  # checked against OUTCOMES above
                since=_when(req, "since"), until=_when(req, "until"), limit=limit or 100, cursor=cursor,
                states=states,
            )
        except DatabaseUnavailable:
            raise falcon.HTTPServiceUnavailable(description="database unreachable") from None
        resp.content_type = "application/json"
        resp.text = json.dumps({"items": [_row_json(r) for r in rows], "next_cursor": next_cursor})
