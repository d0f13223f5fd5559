"""The webhook pipeline, in its fixed order, independent of Falcon:

    provider + slug (URL) → tenant (404) → provider configured (404) → size limit (413)
    → raw bytes → verify (401) → parse JSON (400) → routing-key check (403) → event ID
    → record (de-duplicated in the database; 503 when it cannot be committed) → 200

Every request, accepted or refused, becomes one webhook-log record. Refusals say why only in the record's
``reason``; the answer's body is one fixed text per status, so a caller learns nothing about secrets,
tenants or which check failed. An accepted event is answered 200 only after its row is committed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from store.errors import DatabaseUnavailable
from store.webhook_log import EventStore, Outcome, RecordResult, WebhookRecord
from tenancy.model import SLUG_PATTERN
from webhook_server import events, verify
from webhook_server.metrics import Metrics
from webhook_server.routing import URL_PROVIDERS, ProviderRoute, Routing, TenantRoute

log = logging.getLogger(__name__)

# The only request headers kept in the log: never a signature, a secret header or a cookie. "peer" and
# "client" are set by the resources (webhook_server/client_address.py), as are the forwarded headers:
# present only when the peer is a trusted proxy.
SAFE_HEADERS = ("content-type", "content-length", "user-agent", "x-forwarded-for", "x-request-id",
                "x-real-ip", "x-hospitable-event", "peer", "client")
MAX_HEADER_VALUE = 256
_SLUG = re.compile(SLUG_PATTERN)

SIGNATURE_HEADERS: Mapping[str, tuple[str, ...]] = {
    "hospitable": ("signature", "x-hospitable-signature"),
    "whatsapp": ("x-hub-signature-256",),
    "nuki": ("x-nuki-signature-sha256",),
    "beds24": ("x-tenantctl-secret",),
}

BODIES: Mapping[int, bytes] = {
    200: b'{"status":"ok"}',
    400: b'{"error":"bad request"}',
    401: b'{"error":"unauthorized"}',
    403: b'{"error":"forbidden"}',
    404: b'{"error":"not found"}',
    408: b'{"error":"request timeout"}',
    413: b'{"error":"payload too large"}',
    503: b'{"error":"temporarily unavailable, retry"}',
}
DUPLICATE_BODY = b'{"status":"duplicate"}'


class Clock(Protocol):
    """Wall time for the record, monotonic time for latency; injected so tests can fix both."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_048_576
    stored_body_bytes: int = 65_536


@dataclass(frozen=True)
class Inbound:
    """One request as the pipeline sees it. ``headers`` keys are lower-case."""

    url_provider: str
    slug: str
    headers: Mapping[str, str]
    content_length: int | None
    read: Callable[[int], bytes]  # reads at most n bytes of the body
    query: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass
class _Ctx:
    provider: str
    slug: str
    started: float
    received_at: datetime
    headers: dict[str, str]
    tenant: str | None = None
    body_size: int = 0
    event_id: str | None = None
    item_keys: tuple[str, ...] = ()


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: headers[k][:MAX_HEADER_VALUE] for k in SAFE_HEADERS if k in headers}


class Pipeline:
    def __init__(self, routing: Routing, store: EventStore, clock: Clock, limits: Limits,
                 metrics: Metrics | None = None) -> None:
        self.routing = routing
        self.store = store
        self.clock = clock
        self.limits = limits
        self.metrics = metrics

    # -- entry points ------------------------------------------------------------------------------
    def post(self, req: Inbound) -> Reply:
        provider = _provider(req.url_provider)
        ctx = _Ctx(provider, req.slug, self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        found = self._route(ctx, provider)
        if isinstance(found, Reply):
            return found
        tenant, route = found

        if req.content_length is not None and req.content_length > self.limits.max_body_bytes:
            ctx.body_size = req.content_length
            return self._refuse(ctx, 413, "body-too-large")
        # Read at most one byte past the limit: a lying or absent Content-Length cannot make us buffer more.
        try:
            body = req.read(self.limits.max_body_bytes + 1)
        except TimeoutError:  # the server's per-request deadline (webhook_server/worker.py)
            return self._refuse(ctx, 408, "body-timeout")
        ctx.body_size = len(body)
        if len(body) > self.limits.max_body_bytes:
            return self._refuse(ctx, 413, "body-too-large")

        try:
            self._verify(provider, route, req.headers, body)
        except verify.VerificationFailed as e:
            return self._refuse(ctx, 401, e.reason)

        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return self._refuse(ctx, 400, "invalid-json")
        if not isinstance(payload, dict):
            return self._refuse(ctx, 400, "json-not-an-object")
        ctx.event_id = events.event_id(provider, payload, body)
        ctx.item_keys = events.item_keys(provider, payload)

        refusal = self._check_routing_keys(provider, route, tenant, payload)
        if refusal is not None:
            return self._refuse(ctx, 403, refusal)

        return self._accept(ctx, body)

    def handshake(self, req: Inbound) -> Reply:
        """Meta's GET handshake: echo ``hub.challenge`` when the verify token is the tenant's."""
        ctx = _Ctx("whatsapp", req.slug, self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        found = self._route(ctx, "whatsapp")
        if isinstance(found, Reply):
            return found
        _, route = found
        q = req.query or {}
        expected = route.verify_token.values[0] if route.verify_token else None
        try:
            challenge = verify.verify_handshake(q.get("hub.mode"), q.get("hub.verify_token"),
                                                q.get("hub.challenge"), expected)
        except verify.VerificationFailed as e:
            return self._refuse(ctx, 403, e.reason)
        rec = self._record(ctx, "accepted", 200, "handshake", None)
        if rec is None:
            return Reply(503, BODIES[503])
        return Reply(200, challenge.encode("utf-8"), "text/plain")

    # -- steps -------------------------------------------------------------------------------------
    def _route(self, ctx: _Ctx, provider: str) -> tuple[TenantRoute, ProviderRoute] | Reply:
        tenant = self.routing.tenant(ctx.slug)
        if tenant is None:
            slug = ctx.slug if _SLUG.fullmatch(ctx.slug) else "(invalid)"
            return self._refuse(ctx, 404, f"unknown-tenant:{slug}"[:64])
        ctx.tenant = tenant.slug
        route = tenant.providers.get(provider)
        if route is None:
            return self._refuse(ctx, 404, "provider-not-configured")
        return tenant, route

    @staticmethod
    def _verify(provider: str, route: ProviderRoute, headers: Mapping[str, str], body: bytes) -> None:
        names = SIGNATURE_HEADERS[provider]
        header = next((headers[n] for n in names if n in headers), None)
        if provider == "whatsapp":
            verify.verify_meta_signature(body, header, route.keys.values)
        elif provider == "beds24":
            verify.verify_shared_secret(header, route.keys.values)
        else:
            verify.verify_hex_hmac(body, header, route.keys.values)

    def _check_routing_keys(self, provider: str, route: ProviderRoute, tenant: TenantRoute,
                            payload: dict[str, Any]) -> str | None:
        """The trust boundary: the URL chose the tenant; the payload may only confirm it."""
        if provider != "whatsapp":
            return None
        keys = events.whatsapp_routing_keys(payload)
        if not keys or any(k is None for k in keys):
            return "missing-routing-key"
        for k in keys:
            if k not in route.routing_keys:
                owner = self.routing.owners.get(str(k))
                return f"cross-tenant:{owner}"[:64] if owner else "cross-tenant:unknown-phone-number-id"
        return None

    def _accept(self, ctx: _Ctx, body: bytes) -> Reply:
        stored = body[: self.limits.stored_body_bytes].decode("utf-8", errors="replace")
        result = self._record(ctx, "accepted", 200, None, stored)
        if result is None:
            return Reply(503, BODIES[503])
        if result is RecordResult.DUPLICATE:
            return Reply(200, DUPLICATE_BODY)
        return Reply(200, BODIES[200])

    def _refuse(self, ctx: _Ctx, status: int, reason: str) -> Reply:
        # A refusal is answered as such even when its record fails: the provider retries either way.
        self._record(ctx, "rejected", status, reason, None)
        return Reply(status, BODIES[status])

    def _record(self, ctx: _Ctx, outcome: Outcome, status: int, reason: str | None,
                body: str | None) -> RecordResult | None:
        latency = self.clock.monotonic() - ctx.started
        rec = WebhookRecord(
            received_at=ctx.received_at, tenant=ctx.tenant, provider=ctx.provider, outcome=outcome,
            status_code=status, reason=reason, event_id=ctx.event_id, headers=ctx.headers,
            body_size=ctx.body_size, body=body, latency_ms=round(latency * 1000, 3), item_keys=ctx.item_keys,
        )
        try:
            result = self.store.record(rec)
        except DatabaseUnavailable as e:
            log.error("webhook not recorded (%s/%s, would be %d): %s", ctx.provider, ctx.tenant or "-",
                      status, e)
            self._observe(ctx, "error")
            return None
        self._observe(ctx, "duplicate" if result is RecordResult.DUPLICATE else outcome)
        return result

    def _observe(self, ctx: _Ctx, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.observe(ctx.provider, ctx.tenant, outcome, self.clock.monotonic() - ctx.started)


def _provider(url_segment: str) -> str:
    return URL_PROVIDERS[url_segment]
