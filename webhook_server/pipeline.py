"""The webhook pipeline, in its fixed order, independent of Falcon:

    provider + slug (URL) → tenant (404) → provider configured (404) → size limit (413)
    → raw bytes → verify (401) → parse JSON (400) → routing-key check (403) → event ID
    → record (de-duplicated in the database; 503 when it cannot be committed) → 200

Every request, accepted or refused, becomes one webhook-log record. Refusals say why only in the record's
``reason``; the answer's body is one fixed text per status, so a caller learns nothing about secrets,
tenants or which check failed. An accepted event is answered 200 only after its row is committed.

The app-level WhatsApp callback (:meth:`Pipeline.post_app`, Meta's app default callback URL) has no slug:
size limit (413) → verify with the Meta app secret (401) → parse (400) → route each change by its
phone-number ID, else its WABA ID → one record per tenant → 200. There the batch is split, not refused:
Meta batches per app, not per WABA, so a refusal would be retried as the same batch and never succeed.
A change no tenant owns is recorded as ``rejected`` with reason ``unroutable:…`` and answered 200 (see
``post_app``); docs/whatsapp-webhooks.md says which events arrive where.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from store.errors import DatabaseUnavailable
from store.webhook_log import EventStore, Outcome, RecordResult, WebhookRecord
from tenancy.model import SLUG_PATTERN
from webhook_server import events, verify
from webhook_server.metrics import Metrics
from webhook_server.routing import URL_PROVIDERS, Keys, ProviderRoute, Routing, TenantRoute

log = logging.getLogger(__name__)

# The only request headers kept in the log: never a signature, a secret header or a cookie. "peer" and
# "client" are set by the resources (webhook_server/client_address.py), as are the forwarded headers:
# present only when the peer is a trusted proxy.
SAFE_HEADERS = ("content-type", "content-length", "user-agent", "x-forwarded-for", "x-request-id",
                "x-real-ip", "x-hospitable-event", "peer", "client")
MAX_HEADER_VALUE = 256
_SLUG = re.compile(SLUG_PATTERN)
_ROUTING_ID = re.compile(r"[0-9]{1,20}")

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
                 metrics: Metrics | None = None, meta_verify_token: Keys | None = None) -> None:
        self.routing = routing
        self.store = store
        self.clock = clock
        self.limits = limits
        self.metrics = metrics
        # The platform's verify token for the handshake of the app-level WhatsApp callback.
        self.meta_verify_token = meta_verify_token or Keys(())

    # -- entry points ------------------------------------------------------------------------------
    def post(self, req: Inbound) -> Reply:
        provider = _provider(req.url_provider)
        ctx = _Ctx(provider, req.slug, self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        found = self._route(ctx, provider)
        if isinstance(found, Reply):
            return found
        tenant, route = found

        got = self._read_verified(ctx, req, lambda body: self._verify(provider, route, req.headers, body))
        if isinstance(got, Reply):
            return got
        body, payload = got
        ctx.event_id = events.event_id(provider, payload, body)
        ctx.item_keys = events.item_keys(provider, payload)

        if provider == "whatsapp" and (shape := events.whatsapp_shape_problem(payload)) is not None:
            return self._refuse(ctx, 400, shape)
        refusal = self._check_routing_keys(provider, route, tenant, payload)
        if refusal is not None:
            return self._refuse(ctx, 403, refusal)

        return self._accept(ctx, body)

    def post_app(self, req: Inbound) -> Reply:
        """`POST /api/webhooks/wa`: Meta's app-level callback, routed change by change (module docstring).

        Each tenant named by the batch gets one record holding only its own changes (the original body
        when the batch is all one tenant's), de-duplicated on its item keys, so a retry after a partial
        failure stores each part once. The changes no tenant owns become one ``rejected`` record with
        status 200 and reason ``unroutable:<why>:<the ID>``, without their body. 200 only when every
        record was committed; otherwise 503 and Meta retries the whole batch.
        """
        ctx = _Ctx("whatsapp", "", self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        header = req.headers.get(SIGNATURE_HEADERS["whatsapp"][0])
        got = self._read_verified(
            ctx, req, lambda body: verify.verify_meta_signature(body, header, self.routing.meta_app_keys.values))
        if isinstance(got, Reply):
            return got
        body, payload = got

        shape = events.whatsapp_shape_problem(payload)
        by_tenant, unroutable = self._split(payload) if shape is None else ({}, [((-1, -1), shape)])
        results: list[RecordResult | None] = []
        whole = len(by_tenant) == 1 and not unroutable
        for slug in sorted(by_tenant):
            part = payload if whole else events.whatsapp_subset(payload, by_tenant[slug])
            part_body = body if whole else _dumps(part)
            tctx = replace(ctx, tenant=slug, body_size=len(part_body),
                           event_id=events.event_id("whatsapp", part, part_body),
                           item_keys=events.item_keys("whatsapp", part))
            # Whole, as _accept keeps it: the row is the outbox (a split part is its tenant's own JSON).
            stored = part_body.decode("utf-8", errors="replace")
            results.append(self._record(tctx, "accepted", 200, None, stored))
        if unroutable or not by_tenant:
            # Answered 200 all the same: the signature proved Meta sent it, and no retry can make a WABA
            # nobody onboarded routable; 4xx/5xx would only have Meta retry it for days and then flag
            # the app's callback, which every tenant's template and quality events share.
            # The record (reason, event ID; never the body: it is no tenant's data) is what an operator
            # sees in `tenantctl webhooks log` and `stats`.
            part = (events.whatsapp_subset(payload, {p for p, _ in unroutable}) if unroutable and shape is None
                    else payload)
            more = f" +{len(unroutable) - 1}" if len(unroutable) > 1 else ""
            reason = f"unroutable:{unroutable[0][1] if unroutable else 'missing-routing-key'}{more}"
            uctx = replace(ctx, tenant=None, item_keys=(), event_id=events.event_id("whatsapp", part, body))
            results.append(self._record(uctx, "rejected", 200, reason[:64], None))
        if any(r is None for r in results):
            return Reply(503, BODIES[503])
        if by_tenant and all(r is RecordResult.DUPLICATE for r in results[:len(by_tenant)]):
            return Reply(200, DUPLICATE_BODY)
        return Reply(200, BODIES[200])

    def _split(self, payload: dict[str, Any]) -> tuple[
            dict[str, set[tuple[int, int]]], list[tuple[tuple[int, int], str]]]:
        """The changes of each tenant (as WhatsAppChange positions), and those of none with their reason."""
        by_tenant: dict[str, set[tuple[int, int]]] = {}
        unroutable: list[tuple[tuple[int, int], str]] = []
        for c in events.whatsapp_changes(payload):
            targets, why = self.routing.whatsapp_targets(c.account, c.phone)
            for slug in targets:
                by_tenant.setdefault(slug, set()).add((c.entry, c.change))
            if why is not None:
                key = c.phone if why == "unknown-phone-number-id" else c.account
                shown = key if key is not None and _ROUTING_ID.fullmatch(key) else "(invalid)"
                unroutable.append(((c.entry, c.change), f"{why}:{shown}" if key is not None else why))
        return by_tenant, unroutable

    def handshake(self, req: Inbound) -> Reply:
        """Meta's GET handshake: echo ``hub.challenge`` when the verify token is the tenant's."""
        ctx = _Ctx("whatsapp", req.slug, self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        found = self._route(ctx, "whatsapp")
        if isinstance(found, Reply):
            return found
        _, route = found
        return self._handshake(ctx, req, route.verify_token)

    def handshake_app(self, req: Inbound) -> Reply:
        """The handshake of the app-level callback: the verify token is the platform's (settings)."""
        ctx = _Ctx("whatsapp", "", self.clock.monotonic(), self.clock.now(), safe_headers(req.headers))
        return self._handshake(ctx, req, self.meta_verify_token)

    def _handshake(self, ctx: _Ctx, req: Inbound, token: Keys) -> Reply:
        q = req.query or {}
        expected = token.values[0] if token else None
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
    def _read_verified(self, ctx: _Ctx, req: Inbound,
                       check: Callable[[bytes], None]) -> tuple[bytes, dict[str, Any]] | Reply:
        """Size limit (413) → raw bytes → CHECK the sender (401) → a JSON object (400)."""
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
            check(body)
        except verify.VerificationFailed as e:
            return self._refuse(ctx, 401, e.reason)

        try:
            # JSON exchanged between systems is UTF-8 (RFC 8259 §8.1): anything else could not be
            # delivered byte for byte, so it is refused rather than stored altered.
            body.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(ctx, 400, "body-not-utf8")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return self._refuse(ctx, 400, "invalid-json")
        if not isinstance(payload, dict):
            return self._refuse(ctx, 400, "json-not-an-object")
        return body, payload

    def _route(self, ctx: _Ctx, provider: str) -> tuple[TenantRoute, ProviderRoute] | Reply:
        tenant = self.routing.tenant(ctx.slug, provider)
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
        changes = events.whatsapp_changes(payload)
        if not changes:
            return "missing-routing-key"
        for c in changes:
            refusal = self.routing.whatsapp_refusal(route, c.account, c.phone)
            if refusal is not None:
                return refusal
        return None

    def _accept(self, ctx: _Ctx, body: bytes) -> Reply:
        # Kept whole: the row is the outbox, and delivery hands the body on byte for byte (checked UTF-8
        # in _read_verified, RFC 8259 §8.1, so the text round-trips).
        stored = body.decode("utf-8")
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
            # Answered 503, so the provider sends it again; a commit past its deadline may still land, and then
            # that retry is recorded as a duplicate: the event is kept once either way.
            log.error("webhook answered 503, not known to be recorded (%s/%s, would be %d; the provider's retry "
                      "is kept or de-duplicated): %s", ctx.provider, ctx.tenant or "-", status, e)
            self._observe(ctx, "error")
            return None
        self._observe(ctx, "duplicate" if result is RecordResult.DUPLICATE else outcome, reason)
        return result

    def _observe(self, ctx: _Ctx, outcome: str, reason: str | None = None) -> None:
        if self.metrics is not None:
            self.metrics.observe(ctx.provider, ctx.tenant, outcome, self.clock.monotonic() - ctx.started, reason)


def _provider(url_segment: str) -> str:
    return URL_PROVIDERS[url_segment]


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
