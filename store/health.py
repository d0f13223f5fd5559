"""Health results: every row of every `tenantctl health` run, so the page and `/metrics` show the last one
without re-running it; and the webhook log's evidence the checks read (last verified event, counts).

Details and hints passed in must already be redacted by the caller (the reconciler knows the secrets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, String, and_, case, column, delete, func, insert, select, values

from store.engine import begin_write
from store.schema import health_results, webhook_event_keys, webhook_log
from store.webhook_log import newest_first

KEEP = timedelta(days=30)  # older results are pruned when a run is recorded


@dataclass(frozen=True)
class HealthResult:
    tenant: str
    provider: str
    address: str
    health: str  # healthy | progressing | degraded | missing | unknown | suspended
    sync: str | None  # "in sync" | "out of sync" | None
    detail: str
    hint: str
    duration_ms: float
    checked_at: datetime
    tenant_status: str | None = None  # onboarding | active | suspended, as the tenant file said


def record_run(engine: Engine, results: Sequence[HealthResult], *, keep: timedelta = KEEP) -> int:
    """Store one run's rows (one transaction) and prune results older than `keep`; returns rows stored."""
    if not results:
        return 0
    newest = max(r.checked_at for r in results)
    with begin_write(engine) as conn:
        conn.execute(insert(health_results), [{
            "checked_at": r.checked_at, "tenant": r.tenant, "provider": r.provider, "address": r.address[:512],
            "tenant_status": r.tenant_status, "health": r.health, "sync": r.sync, "detail": r.detail[:2000],
            "hint": r.hint[:2000],
            "duration_ms": r.duration_ms} for r in results])
        conn.execute(delete(health_results).where(health_results.c.checked_at < newest - keep))
    return len(results)


def latest(engine: Engine, tenant: str | None = None, *, tenants: Sequence[str] | None = None) -> list[
        HealthResult]:
    """The rows of the newest run per (tenant, provider), ordered by tenant, provider, address; only
    `tenant`'s or `tenants`' when given."""
    h = health_results.c
    newest = select(h.tenant, h.provider, func.max(h.checked_at).label("at")).group_by(h.tenant, h.provider)
    if tenant is not None:
        newest = newest.where(h.tenant == tenant)
    if tenants is not None:
        newest = newest.where(h.tenant.in_(list(tenants)))
    sub = newest.subquery()
    stmt = (select(health_results)
            .join(sub, and_(h.tenant == sub.c.tenant, h.provider == sub.c.provider, h.checked_at == sub.c.at))
            .order_by(h.tenant, h.provider, h.address))
    with engine.connect() as conn:
        return [HealthResult(r.tenant, r.provider, r.address, r.health, r.sync, r.detail, r.hint,
                             r.duration_ms, r.checked_at, r.tenant_status) for r in conn.execute(stmt)]


# An inbound event: accepted and POSTed. A WhatsApp handshake (GET) is recorded as accepted with reason
# "handshake"; it is no event, so no evidence that events arrive.
_INBOUND = and_(webhook_log.c.outcome == "accepted", webhook_log.c.reason.is_(None))


@dataclass(frozen=True)
class Evidence:
    """What the webhook log says about one (tenant, provider)."""

    last_verified: datetime | None  # newest accepted or duplicate request, at any time
    accepted_in_window: int


def inbound_evidence(engine: Engine, *, now: datetime, window: timedelta) -> dict[tuple[str, str], Evidence]:
    """Per (tenant, provider) with any verified request: one GROUP BY over the log's (tenant, provider,
    received_at) index."""
    c = webhook_log.c
    verified = and_(c.outcome.in_(("accepted", "duplicate")), c.reason.is_(None))
    stmt = (select(c.tenant, c.provider, func.max(c.received_at).label("last"),
                   func.coalesce(func.sum(case((and_(_INBOUND, c.received_at >= now - window,
                                                     c.received_at <= now), 1), else_=0)), 0).label("n"))
            .where(verified, c.tenant.is_not(None))
            .group_by(c.tenant, c.provider))
    with engine.connect() as conn:
        return {(r.tenant, r.provider): Evidence(r.last, int(r.n)) for r in conn.execute(stmt)}


MESSAGE_STATUSES = ("sent", "delivered", "read", "failed")  # WhatsApp status webhooks' `status`


def message_statuses(engine: Engine, tenant: str, message_id: str) -> dict[str, datetime]:
    """status → when the webhook server recorded the WhatsApp status webhook of `message_id` for `tenant`
    (the per-item keys `status:<wamid>:<status>` of webhook_event_keys, so a batched delivery counts too)."""
    k = webhook_event_keys.c
    keys = {f"status:{message_id}:{s}": s for s in MESSAGE_STATUSES}
    stmt = select(k.item_key, k.received_at).where(k.provider == "whatsapp", k.tenant == tenant,
                                                   k.item_key.in_(list(keys)))
    with engine.connect() as conn:
        return {keys[r.item_key]: r.received_at for r in conn.execute(stmt)}


def refusal_reasons(engine: Engine, tenant: str, provider: str, *, since: datetime, limit: int = 3) -> list[str]:
    """The reasons of the newest refused requests for `tenant` and `provider` since `since`."""
    c = webhook_log.c
    stmt = (select(c.reason).where(c.tenant == tenant, c.provider == provider, c.outcome == "rejected",
                                   c.received_at >= since).order_by(c.id.desc()).limit(limit))
    with engine.connect() as conn:
        return [str(r.reason or "") for r in conn.execute(stmt)]


def accepted_bodies(engine: Engine, provider: str, *, since: datetime, limit: int = 5000) -> list[tuple[str, str]]:
    """(tenant, body) of accepted requests of a provider since `since`, newest first, at most `limit`."""
    c = webhook_log.c
    stmt = (select(c.tenant, c.body).where(c.provider == provider, _INBOUND,
                                           c.received_at >= since, c.body.is_not(None), c.tenant.is_not(None))
            .order_by(c.id.desc()).limit(limit))
    with engine.connect() as conn:
        return [(r.tenant, r.body) for r in conn.execute(stmt)]


def last_accepted(engine: Engine, pairs: Sequence[tuple[str, str]] | None = None) -> dict[
        tuple[str, str], datetime]:
    """(tenant, provider) → the newest accepted request (any age). Without `pairs`: one GROUP BY over the
    log (callers cache it). With `pairs`: one index probe each ((tenant, provider, received_at) read
    backwards to the first accepted row), for pages that show a few tenants of a big log."""
    c = webhook_log.c
    if pairs is None:
        stmt = (select(c.tenant, c.provider, func.max(c.received_at).label("last"))
                .where(_INBOUND, c.tenant.is_not(None)).group_by(c.tenant, c.provider))
        with engine.connect() as conn:
            return {(r.tenant, r.provider): r.last for r in conn.execute(stmt) if r.last is not None}
    if not pairs:
        return {}
    if engine.dialect.name == "sqlite":  # no aliased VALUES lists; in-process, a probe each costs no round trip
        out: dict[tuple[str, str], datetime] = {}
        with engine.connect() as conn:
            for tenant, provider in pairs:
                last = conn.execute(select(func.max(c.received_at)).where(
                    c.tenant == tenant, c.provider == provider, _INBOUND)).scalar_one_or_none()
                if last is not None:
                    out[(tenant, provider)] = last
        return out
    p = values(column("tenant", String(64)), column("provider", String(32)), name="pairs").data(list(pairs))
    newest = (select(func.max(c.received_at))
              .where(c.tenant == p.c.tenant, c.provider == p.c.provider, _INBOUND)
              .scalar_subquery())
    with engine.connect() as conn:
        return {(r[0], r[1]): r[2] for r in conn.execute(select(p.c.tenant, p.c.provider, newest))
                if r[2] is not None}


def tenants_with_results(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(health_results.c.tenant).distinct())]


def window_counts(engine: Engine, tenants: Sequence[str], *, now: datetime,
                  window: timedelta = timedelta(hours=24)) -> dict[tuple[str, str], tuple[int, int]]:
    """(tenant, provider) → (accepted, rejected) in `[now - window, now]` for the given tenants."""
    c = webhook_log.c
    stmt = (select(c.tenant, c.provider,
                   func.sum(case((_INBOUND, 1), else_=0)).label("a"),
                   func.sum(case((c.outcome == "rejected", 1), else_=0)).label("r"))
            .where(c.tenant.in_(list(tenants)), c.received_at >= now - window, c.received_at <= now)
            .group_by(c.tenant, c.provider))
    with engine.connect() as conn:
        return {(r.tenant, r.provider): (int(r.a or 0), int(r.r or 0)) for r in conn.execute(stmt)}


def hourly_accepted(engine: Engine, tenants: Sequence[str], *, now: datetime, hours: int = 24) -> dict[
        str, list[int]]:
    """Accepted requests per tenant per hour, oldest first, the last bucket ending at `now` (the page's
    inbound-rate chart). One range read over the log's received_at index."""
    c = webhook_log.c
    since = now - timedelta(hours=hours)
    stmt = select(c.tenant, c.received_at).where(c.tenant.in_(list(tenants)), _INBOUND,
                                                 c.received_at > since, c.received_at <= now)
    out = {t: [0] * hours for t in tenants}
    with engine.connect() as conn:
        for tenant, when in conn.execute(stmt):
            i = int((when - since).total_seconds() // 3600)
            out[tenant][min(max(i, 0), hours - 1)] += 1
    return out


@dataclass(frozen=True)
class LogEntry:
    id: int
    received_at: datetime
    tenant: str | None
    provider: str
    outcome: str
    status_code: int
    reason: str | None
    event_id: str | None
    latency_ms: float | None
    delivery_state: str | None = None  # None: a refused or duplicate request, never queued
    attempts: int = 0  # delivery attempts since it was last queued
    last_status: int | None = None  # the platform's last answer
    last_error: str | None = None  # the last attempt's error (a refused connection, a timeout)


def log_page(engine: Engine, *, tenant: str | None = None, provider: str | None = None,
             outcome: str | None = None, reason: str | None = None, since: datetime | None = None,
             until: datetime | None = None, limit: int = 50, cursor: int | None = None,
             states: Sequence[str] = ()) -> tuple[list[LogEntry], int | None]:
    """The Webhook Logs view: newest first, keyset-paged by id (`cursor`: the last id shown), filters ANDed;
    `reason` matches as a prefix ("cross-tenant" finds every "cross-tenant:<owner>"); `states`: any of these
    delivery states. Never reads bodies or headers."""
    c = webhook_log.c
    stmt = newest_first(engine.dialect.name, (c.id, c.received_at, c.tenant, c.provider, c.outcome, c.status_code,
                                              c.reason, c.event_id, c.latency_ms, c.delivery_state, c.attempts,
                                              c.last_status, c.last_error),
                        tenant=tenant or None, provider=provider or None, outcome=outcome or None,
                        reason=reason or None, since=since, until=until, states=states,
                        limit=limit, cursor=cursor)
    with engine.connect() as conn:
        rows = [LogEntry(**r._mapping) for r in conn.execute(stmt)]  # by name: the columns are its fields
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
