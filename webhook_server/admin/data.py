"""What the Integrations page shows, read from the database: cards per tenant and integration. No secret is
read here (the tenant files are not opened; the log's headers and bodies are never selected)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from store import health as store_health
from store.errors import short_error
from store.queue_depth import QueueDepth, depth_by_tenant, queued_tenants
from webhook_server.admin.chart import Bar, bars

log = logging.getLogger(__name__)

# The webhook log's provider names; health rows use the same (2N and SMTP never send webhooks).
PROVIDERS = ("hospitable", "whatsapp", "nuki", "beds24", "twon", "smtp")
INBOUND = PROVIDERS[:4]  # those that send webhooks, and so have events to deliver
SEVERITY = {"degraded": 0, "missing": 1, "unknown": 2, "progressing": 3, "suspended": 4, "healthy": 5}


@dataclass(frozen=True)
class Card:
    provider: str
    health: str | None  # worst row of the last run; None: never checked
    checked_at: datetime | None
    rows: Sequence[store_health.HealthResult]
    last_event: datetime | None
    accepted: int
    rejected: int
    # Its events' delivery to the platform; None when the queue could not be read (the page says so, never 0).
    queue: QueueDepth | None = None
    oldest_pending_s: float | None = None  # how long the oldest waiting (pending or retrying) event has waited


@dataclass(frozen=True)
class TenantView:
    slug: str
    status: str | None  # from the last health run
    cards: Sequence[Card]
    chart: Sequence[Bar]
    accepted: int
    rejected: int
    checklist: Sequence[tuple[str, bool]] = field(default_factory=tuple)
    # False: no tenant file routes it any more (removed or renamed), but it has health results or queued events.
    in_files: bool = True


def _worst(rows: Sequence[store_health.HealthResult]) -> str | None:
    return min((r.health for r in rows), key=lambda h: SEVERITY.get(h, 9)) if rows else None


def all_slugs(engine: Engine, routed: Sequence[str]) -> list[str]:
    """The routing's tenants, any tenant with stored health results, and any tenant with events in the delivery
    queue (pending, retrying or dead): a removed or renamed tenant's queue is still the operators' to act on, and
    the dead-letter alert counts it. The last is one index seek per queued tenant (store/queue_depth.py)."""
    return sorted({*routed, *store_health.tenants_with_results(engine), *_queued_tenants(engine)})


def _queued_tenants(engine: Engine) -> list[str]:
    """Tenants with a queue, or none when it cannot be read: the page still lists the others (their cards say
    the queue could not be read)."""
    try:
        return queued_tenants(engine)
    except SQLAlchemyError as exc:
        log.warning("Integrations page: queued tenants not readable: %s", short_error(exc))
        return []


def has_queue(engine: Engine, slug: str) -> bool:
    """Whether `slug` has events in the delivery queue (its page exists though no tenant file routes it)."""
    return bool(_queue(engine, [slug]))


def tenants(engine: Engine, names: Sequence[str], *, now: datetime,
            routed: Collection[str] | None = None) -> list[TenantView]:
    """Views of the tenants `names` (a page of them): a fixed number of queries, each restricted to them, the
    delivery queue's too (their ranges of its index: store/queue_depth.py). ``routed``: the tenant files' slugs,
    to mark the others; None marks none."""
    results = store_health.latest(engine, tenants=names)
    counts = store_health.window_counts(engine, names, now=now)
    last = store_health.last_accepted(engine, [(t, p) for t in names for p in INBOUND])
    hourly = store_health.hourly_accepted(engine, names, now=now)
    queue = _queue(engine, names)
    out = []
    for slug in names:
        mine = [r for r in results if r.tenant == slug]
        cards = []
        for p in PROVIDERS:
            rows = [r for r in mine if r.provider == p]
            accepted, rejected = counts.get((slug, p), (0, 0))
            waiting = None if queue is None or p not in INBOUND else queue.get((slug, p), QueueDepth())
            if not rows and (slug, p) not in counts and (slug, p) not in last and waiting in (None, QueueDepth()):
                continue
            oldest = None if waiting is None else waiting.oldest_pending_at
            cards.append(Card(p, _worst(rows), max((r.checked_at for r in rows), default=None), rows,
                              last.get((slug, p)), accepted, rejected, waiting,
                              None if oldest is None else max(0.0, (now - oldest).total_seconds())))
        status = next((r.tenant_status for r in mine if r.tenant_status), None)
        start = now - timedelta(hours=24)
        chart = bars(hourly[slug], (start.hour + 1) % 24)
        view = TenantView(slug, status, cards, chart, sum(c.accepted for c in cards),
                          sum(c.rejected for c in cards), in_files=routed is None or slug in routed)
        if status == "onboarding":
            view = TenantView(**{**view.__dict__, "checklist": checklist(cards)})
        out.append(view)
    return out


def _queue(engine: Engine, names: Sequence[str]) -> Mapping[tuple[str | None, str], QueueDepth] | None:
    """The delivery queue of the tenants `names`, or None when the database would not give it: the page then says
    it could not be read, rather than showing counts of zero."""
    try:
        return depth_by_tenant(engine, names)
    except SQLAlchemyError as exc:
        log.warning("Integrations page: delivery queue not readable: %s", short_error(exc))
        return None


def checklist(cards: Sequence[Card]) -> list[tuple[str, bool]]:
    """The onboarding steps the platform's guide lists, each done or not, from health and the log."""
    by = {c.provider: c for c in cards}

    def healthy(p: str) -> bool:
        return p in by and by[p].health == "healthy"

    def inbound(p: str) -> bool:
        return p in by and by[p].last_event is not None

    steps = [
        ("hospitable", "Hospitable API key answers and its webhook delivers (a verified event arrived)",
         healthy("hospitable") and inbound("hospitable")),
        ("whatsapp", "WhatsApp number verified, WABA subscribed to the tenant's URL, a message received",
         healthy("whatsapp") and inbound("whatsapp")),
        ("nuki", "Nuki locks listed and teammates' codes in sync", healthy("nuki")),
        ("twon", "2N intercoms answer and their users match", healthy("twon")),
        ("smtp", "SMTP: connect, STARTTLS and login work", healthy("smtp")),
        ("beds24", "Beds24 token answers and its webhook delivers", healthy("beds24") and inbound("beds24")),
    ]
    # Only the integrations the tenant has (a card exists), then the run as a whole.
    return [(label, done) for p, label, done in steps if p in by] + [
        ("The last health run found every integration healthy",
         bool(cards) and all(c.health == "healthy" for c in cards if c.health is not None))]
