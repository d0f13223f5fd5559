"""Tables of the tenantctl database (SQLAlchemy Core).

Core rather than ORM: the webhook log is written on every request, in batches, with dialect-specific
``INSERT .. ON CONFLICT DO NOTHING .. RETURNING``; Core does that without identity-map and unit-of-work
overhead, and the read side returns plain frozen dataclasses anyway. Any change here needs a new
migration in ``store/migrations/versions`` (a test compares both).

Time columns are ``UTCDateTime``: timezone-aware UTC in Python on both backends (``timestamptz`` on
PostgreSQL; naive-UTC ISO text on SQLite, which sorts and compares correctly).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

# Rows that take part in de-duplication (the partial unique index below, and ON CONFLICT against it).
ACCEPTED_EVENT_PREDICATE = "outcome = 'accepted' AND event_id IS NOT NULL"
OUTCOMES = ("accepted", "rejected", "duplicate")
RUN_KINDS = ("plan", "apply")
RUN_STATUSES = ("running", "succeeded", "failed", "partial", "no_changes", "aborted")
CHANGE_OUTCOMES = ("planned", "applied", "confirmed", "not_applied", "unknown", "failed", "skipped",
                   "not_attempted")
# Delivery to the platform (the outbox): only accepted rows carry a state; NULL means never queued.
DELIVERY_STATES = ("pending", "retrying", "delivered", "dead")
DUE_PREDICATE = "delivery_state IN ('pending', 'retrying')"
# Every event still to deliver or dead: what the queue's counts read (ix_webhook_log_queue). The predicate is
# literal SQL, as written in migration 0011: a planner uses a partial index only for a query that names it.
QUEUED_STATES = ("pending", "retrying", "dead")
QUEUED_PREDICATE = "delivery_state IN ('pending', 'retrying', 'dead')"
ATTEMPT_OUTCOMES = ("delivered", "failed", "error")
HEALTH_STATUSES = ("healthy", "progressing", "degraded", "missing", "unknown", "suspended")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite aggregates (MAX) may hand back the stored text
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# SQLite only makes "INTEGER PRIMARY KEY" an alias of the rowid (auto-increment); BIGINT would not be.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

webhook_log = Table(
    "webhook_log",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("tenant", String(64), nullable=True),
    Column("provider", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", SmallInteger(), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("event_id", String(255), nullable=True),
    Column("headers", JSON(), nullable=True),
    Column("body_size", Integer(), nullable=False),
    Column("body", Text(), nullable=True),
    Column("latency_ms", Float(), nullable=True),
    # The outbox (docs/delivery.md): set by the insert that records an accepted request, so the event is
    # queued in the commit that allows its 200. next_attempt_at doubles as the claim lease of a worker.
    Column("delivery_state", String(16), nullable=True),
    Column("attempts", Integer(), nullable=False, server_default=text("0")),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("last_status", SmallInteger(), nullable=True),
    Column("last_error", String(255), nullable=True),
    Column("delivered_at", UTCDateTime(), nullable=True),
    # When `webhooks replay` last queued the event again: its retries' age limit counts from here, not from
    # receipt (migration 0010).
    Column("replayed_at", UTCDateTime(), nullable=True),
    # How many further refusals of the same kind this row stands for (store/refusals.py): beyond a rate,
    # refusals are counted into one row per minute instead of one row each.
    Column("repeats", Integer(), nullable=False, server_default=text("0")),
    CheckConstraint(_in("outcome", OUTCOMES), name="outcome"),
    Index(None, "tenant", "provider", "received_at"),
    Index(None, "outcome"),
    Index(None, "received_at"),
    # The de-duplication: one accepted row per provider event. Partial, so rejected and duplicate
    # rows may repeat the event id. Both SQLite (>= 3.8) and PostgreSQL support partial indexes and
    # ON CONFLICT against them.
    Index(
        "uq_webhook_log_accepted_event",
        "provider",
        "tenant",
        "event_id",
        unique=True,
        sqlite_where=text(ACCEPTED_EVENT_PREDICATE),
        postgresql_where=text(ACCEPTED_EVENT_PREDICATE),
    ),
    # What delivery workers poll: only the due rows, so the index stays as small as the queue; per provider in
    # the claim's order (oldest due first, then id), so a claim reads as many entries as it takes of the
    # providers it delivers, and none of another's (migration 0009).
    Index(
        "ix_webhook_log_due",
        "provider",
        "next_attempt_at",
        "id",
        sqlite_where=text(DUE_PREDICATE),
        postgresql_where=text(DUE_PREDICATE),
    ),
    # The queue's counts (store/queue_depth.py: metrics, `webhooks stats`, the Integrations page), per tenant:
    # every pending, retrying and dead row with what the counts and the oldest waiting age read, so a read is
    # index-only and costs what the queue (of the tenants asked for) holds, never what the log holds. Led by
    # the tenant, so the page reads only its tenants' range (migration 0011).
    Index(
        "ix_webhook_log_queue",
        "tenant",
        "provider",
        "delivery_state",
        "received_at",
        "replayed_at",
        sqlite_where=text(QUEUED_PREDICATE),
        postgresql_where=text(QUEUED_PREDICATE),
    ),
    # An id is never given twice, even after the newest rows were pruned: it is the event's `webhook-id`, on
    # which the platform de-duplicates. PostgreSQL's sequence never goes back; SQLite's rowid would be max + 1
    # without AUTOINCREMENT (https://www.sqlite.org/autoinc.html; migration 0010).
    sqlite_autoincrement=True,
)

# One row per delivery attempt of an accepted event (what a gateway shows its users).
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("log_id", _BigId, ForeignKey("webhook_log.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("worker", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", SmallInteger(), nullable=True),
    Column("latency_ms", Float(), nullable=True),
    Column("error", String(255), nullable=True),
    CheckConstraint(_in("outcome", ATTEMPT_OUTCOMES), name="outcome"),
    Index(None, "log_id"),
    Index(None, "started_at"),
)

# Item keys of accepted deliveries that batch several events (WhatsApp: one key per message or status).
# A redelivery whose items were all seen before is a duplicate, whatever the batch it arrives in.
webhook_event_keys = Table(
    "webhook_event_keys",
    metadata,
    Column("provider", String(32), primary_key=True),
    Column("tenant", String(64), primary_key=True),
    Column("item_key", String(255), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Index(None, "received_at"),
)

reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("plan_checksum", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("summary", JSON(), nullable=True),
    Column("tenants", JSON(), nullable=False),
    # Where the run's process runs: one on this host whose pid is gone died without finishing.
    Column("host", String(255), nullable=True),
    Column("pid", Integer(), nullable=True),
    CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
    CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    Index(None, "started_at"),
)

reconcile_changes = Table(
    "reconcile_changes",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("run_id", Integer(), ForeignKey("reconcile_runs.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("address", String(512), nullable=False),
    Column("action", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("error", Text(), nullable=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    CheckConstraint(_in("outcome", CHANGE_OUTCOMES), name="outcome"),
    Index(None, "run_id"),
    Index(None, "tenant", "recorded_at"),
)

tenant_locks = Table(
    "tenant_locks",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("run_id", Integer(), ForeignKey("reconcile_runs.id", ondelete="SET NULL"), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    # Where the holder runs: a holder on this host whose pid is not alive is provably gone.
    Column("host", String(255), nullable=True),
    Column("pid", Integer(), nullable=True),
)

# Values a provider issued once (store/provider_state.py): age ciphertext only, never plaintext.
provider_state = Table(
    "provider_state",
    metadata,
    Column("tenant", String(64), primary_key=True),
    Column("provider", String(32), primary_key=True),
    Column("path", String(128), primary_key=True),
    Column("ciphertext", Text(), nullable=False),
    Column("previous", Text(), nullable=True),
    Column("recipients", Text(), nullable=False),
    Column("revision", Integer(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(255), nullable=False),
    Index(None, "revision"),
)

# One row per checked resource per `tenantctl health` run (store.health); a run's rows share checked_at.
health_results = Table(
    "health_results",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("checked_at", UTCDateTime(), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("address", String(512), nullable=False),
    Column("tenant_status", String(16), nullable=True),
    Column("health", String(16), nullable=False),
    Column("sync", String(16), nullable=True),
    Column("detail", Text(), nullable=False),
    Column("hint", Text(), nullable=False),
    Column("duration_ms", Float(), nullable=False),
    CheckConstraint(_in("health", HEALTH_STATUSES), name="health"),
    Index(None, "tenant", "provider", "checked_at"),
    Index(None, "checked_at"),
)
