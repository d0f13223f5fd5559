"""The delivery queue's depth per provider, on the worker's /metrics: a rule can watch one provider's queue
(WhatsApp messages stuck while bookings flow), read in one statement per scrape from the queue's indexes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, event, text, update

from delivery.metrics import DeliveryMetrics
from store.delivery import queue_by_group, queue_stats, replay
from store.health import log_page
from store.migrate import upgrade
from store.queue_depth import (
    QueueDepth,
    depth_by_provider,
    depth_by_tenant,
    queued_statement,
    queued_tenants,
    statement,
)
from store.schema import webhook_log
from store.webhook_log import query_log

from ..conftest import PgSchemas
from .harness import accepted, insert

NOW = datetime.now(UTC)


def _delivered_log(engine: Engine, n: int) -> None:
    """N delivered events received a day ago (ids 1..N): on PostgreSQL in one statement, since N inserts through
    the write path would take seconds of the suite."""
    if engine.dialect.name != "postgresql":
        for start in range(0, n, 5000):
            insert(engine, accepted(min(5000, n - start), start=start, at=NOW - timedelta(days=1)))
        with engine.begin() as conn:
            conn.execute(update(webhook_log).values(delivery_state="delivered"))
        return
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO webhook_log (received_at, tenant, provider, outcome, status_code, event_id, body_size, "
            "body, delivery_state, attempts) SELECT :at, 'acme', 'hospitable', 'accepted', 200, 'bulk-' || i, 2, "
            "'{}', 'delivered', 1 FROM generate_series(1, :n) AS i"), {"at": NOW - timedelta(days=1), "n": n})


def _queue(engine: Engine) -> None:
    """hospitable (acme): 1 pending 10 min old, 1 retrying 20 min old, 2 dead, 1 delivered; whatsapp (acme): 2
    pending, 3 min old; whatsapp (blue-harbor): 1 pending 1 min old; nuki: nothing."""
    insert(engine, accepted(1, at=NOW - timedelta(minutes=10)))
    insert(engine, accepted(1, start=1, at=NOW - timedelta(minutes=20)))
    insert(engine, accepted(3, start=2, at=NOW - timedelta(hours=5)))
    insert(engine, accepted(2, provider="whatsapp", at=NOW - timedelta(minutes=3)))
    insert(engine, accepted(1, provider="whatsapp", tenant="blue-harbor", at=NOW - timedelta(minutes=1)))
    with engine.begin() as conn:
        for ids, state in (((2,), "retrying"), ((3, 4), "dead"), ((5,), "delivered")):
            conn.execute(update(webhook_log).where(webhook_log.c.id.in_(ids)).values(delivery_state=state))


def test_the_queue_is_counted_per_provider_and_per_tenant_with_its_oldest_waiting_event(db: Engine) -> None:
    _queue(db)
    assert depth_by_provider(db) == {
        "hospitable": QueueDepth(pending=1, retrying=1, dead=2, oldest_pending_at=NOW - timedelta(minutes=20)),
        "whatsapp": QueueDepth(pending=3, oldest_pending_at=NOW - timedelta(minutes=3))}
    assert depth_by_tenant(db) == {
        ("acme", "hospitable"): QueueDepth(1, 1, 2, NOW - timedelta(minutes=20)),
        ("acme", "whatsapp"): QueueDepth(pending=2, oldest_pending_at=NOW - timedelta(minutes=3)),
        ("blue-harbor", "whatsapp"): QueueDepth(pending=1, oldest_pending_at=NOW - timedelta(minutes=1))}
    # `webhooks stats` and the demo read the same statement.
    assert sorted((g.tenant, g.provider, g.pending, g.retrying, g.dead) for g in queue_by_group(db)) == [
        ("acme", "hospitable", 1, 1, 2), ("acme", "whatsapp", 2, 0, 0), ("blue-harbor", "whatsapp", 1, 0, 0)]
    q = queue_stats(db)
    assert (q.pending, q.retrying, q.dead, q.oldest_due_at) == (4, 1, 2, NOW - timedelta(minutes=20))


def test_a_page_reads_only_its_tenants_queue_and_finds_the_tenants_with_one(db: Engine) -> None:
    """The Integrations page asks for the queue of the tenants it shows, not every tenant's; and for the tenants
    that have one at all (a removed tenant's dead letters are still to act on), the unknown tenant left out."""
    _queue(db)
    insert(db, accepted(1, start=10, tenant=None, provider="nuki"))  # type: ignore[arg-type]  # an unknown tenant
    assert depth_by_tenant(db, ["blue-harbor", "nobody"]) == {
        ("blue-harbor", "whatsapp"): QueueDepth(pending=1, oldest_pending_at=NOW - timedelta(minutes=1))}
    assert depth_by_tenant(db, []) == {}
    assert queued_tenants(db) == ["acme", "blue-harbor"]
    with db.begin() as conn:  # delivered: no longer queued
        conn.execute(update(webhook_log).where(webhook_log.c.tenant == "blue-harbor")
                     .values(delivery_state="delivered"))
    assert queued_tenants(db) == ["acme"]


def test_the_oldest_waiting_age_counts_from_the_last_replay_not_from_receipt(db: Engine) -> None:
    """The age limit's clock (delivery/worker.py): an event received ten days ago and replayed a minute ago has
    waited a minute, so the "stuck > 15 min" alert does not fire the moment it is replayed."""
    insert(db, accepted(1, at=NOW - timedelta(days=10)))
    insert(db, accepted(1, start=1, at=NOW - timedelta(minutes=5)))
    with db.begin() as conn:
        conn.execute(update(webhook_log).where(webhook_log.c.event_id == "evt-0")
                     .values(replayed_at=NOW - timedelta(minutes=1)))
    assert depth_by_provider(db)["hospitable"].oldest_pending_at == NOW - timedelta(minutes=5)
    assert depth_by_tenant(db, ["acme"])[("acme", "hospitable")].oldest_pending_at == NOW - timedelta(minutes=5)
    assert queue_stats(db).oldest_due_at == NOW - timedelta(minutes=5)
    with db.begin() as conn:  # replayed longer ago than the other was received: the replay is the oldest wait
        conn.execute(update(webhook_log).where(webhook_log.c.event_id == "evt-0")
                     .values(replayed_at=NOW - timedelta(minutes=30)))
    assert depth_by_provider(db)["hospitable"].oldest_pending_at == NOW - timedelta(minutes=30)
    # A dead letter's times are no wait: it is not delivered until someone replays it.
    with db.begin() as conn:
        conn.execute(update(webhook_log).where(webhook_log.c.event_id == "evt-0").values(delivery_state="dead"))
    assert depth_by_provider(db)["hospitable"] == QueueDepth(
        pending=1, dead=1, oldest_pending_at=NOW - timedelta(minutes=5))


def _scrape(engine: Engine) -> tuple[str, list[str]]:
    """One scrape of the worker's metrics, and how many statements it ran."""
    statements: list[str] = []

    def count(*args: object) -> None:
        if str(args[2]) != "BEGIN":  # SQLite's engine begins its transactions explicitly
            statements.append(str(args[2]))

    metrics = DeliveryMetrics(lambda: depth_by_provider(engine), lambda: NOW)
    event.listen(engine, "before_cursor_execute", count)
    try:
        text = generate_latest(metrics.registry).decode()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return text, statements


def test_the_queue_gauges_carry_the_provider_and_are_read_in_one_statement_per_scrape(db: Engine) -> None:
    _queue(db)
    text, statements = _scrape(db)
    assert len(statements) == 1, statements  # one grouped statement, however many providers
    series = dict(re.findall(r"^(tenantctl_delivery_(?:queue_depth|oldest_pending_age_seconds)\{[^}]*\}) (\S+)$",
                             text, re.M))
    assert series == {
        'tenantctl_delivery_queue_depth{provider="hospitable",state="pending"}': "1.0",
        'tenantctl_delivery_queue_depth{provider="hospitable",state="retrying"}': "1.0",
        'tenantctl_delivery_queue_depth{provider="hospitable",state="dead"}': "2.0",
        'tenantctl_delivery_queue_depth{provider="whatsapp",state="pending"}': "3.0",
        'tenantctl_delivery_queue_depth{provider="whatsapp",state="retrying"}': "0.0",
        'tenantctl_delivery_queue_depth{provider="whatsapp",state="dead"}': "0.0",
        # A provider with nothing queued has its series, zero, so that a rule on it works before its first event.
        **{f'tenantctl_delivery_queue_depth{{provider="{p}",state="{s}"}}': "0.0"
           for p in ("nuki", "beds24") for s in ("pending", "retrying", "dead")},
        'tenantctl_delivery_oldest_pending_age_seconds{provider="hospitable"}': "1200.0",
        'tenantctl_delivery_oldest_pending_age_seconds{provider="whatsapp"}': "180.0",
        'tenantctl_delivery_oldest_pending_age_seconds{provider="nuki"}': "0.0",
        'tenantctl_delivery_oldest_pending_age_seconds{provider="beds24"}': "0.0",
    }
    assert "tenantctl_delivery_queue_up 1.0" in text


def _statements(engine: Engine) -> dict[str, str]:
    """Each read of the queue as the SQL sent (a page's tenants as literals, as a plan needs them)."""
    out = {}
    for name, stmt in (("per provider", statement(engine.dialect.name, per_tenant=False)),
                       ("per tenant", statement(engine.dialect.name, per_tenant=True)),
                       ("a page's tenants", statement(engine.dialect.name, per_tenant=True, some_tenants=True)
                        .bindparams(tenants=["acme", "blue-harbor"])),
                       ("tenants with a queue", queued_statement(engine.dialect.name))):
        out[name] = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    return out


def test_the_queue_is_read_from_its_index_never_by_scanning_the_log_on_sqlite(tmp_path: object) -> None:
    """SQLite's plan: every read of the queue from ix_webhook_log_queue alone (a covering index: no table row is
    read), a page's tenants by their ranges of it, the tenants with a queue by one seek each."""
    from store.engine import make_engine

    url = f"sqlite:///{tmp_path}/plan.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        plans = {}
        for name, sql in _statements(engine).items():
            with engine.connect() as conn:
                plan = [str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            plans[name] = [step for step in plan if "webhook_log" in step or step.startswith("SEARCH w ")]
        assert plans == {
            "per provider": ["SCAN webhook_log USING COVERING INDEX ix_webhook_log_queue"],
            "per tenant": ["SCAN webhook_log USING COVERING INDEX ix_webhook_log_queue"],
            "a page's tenants": ["SEARCH webhook_log USING COVERING INDEX ix_webhook_log_queue (tenant=?)"],
            "tenants with a queue": ["SEARCH webhook_log USING COVERING INDEX ix_webhook_log_queue",
                                     "SEARCH w USING COVERING INDEX ix_webhook_log_queue (tenant>?)"],
        }, plans
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_queue_is_read_from_its_index_never_by_scanning_the_log_on_postgresql(pg_schemas: PgSchemas) -> None:
    """A log of 20,000 delivered events and a queue of 30: the planner, with the log's statistics, reads the queue
    through its partial index (a page's tenants by their ranges of it) and no row of the delivered log."""
    from store.engine import make_engine

    url = pg_schemas.new()
    upgrade(url)
    engine = make_engine(url)
    try:
        _delivered_log(engine, 20_000)
        insert(engine, accepted(20, start=30_000, provider="whatsapp"))
        insert(engine, accepted(10, start=40_000, provider="nuki"))
        with engine.begin() as conn:
            conn.execute(update(webhook_log).where(webhook_log.c.provider == "nuki").values(delivery_state="dead"))
            conn.exec_driver_sql("ANALYZE webhook_log")
        for name, sql in _statements(engine).items():
            with engine.connect() as conn:
                plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "ix_webhook_log_queue" in plan, (name, plan)
            assert "Seq Scan" not in plan, (name, plan)
            if name == "a page's tenants":  # their ranges of the index, not the whole queue filtered
                assert re.search(r"Index Cond: \(+tenant\b.* = ANY \(", plan), plan
        depths = depth_by_provider(engine)
        assert (depths["whatsapp"].pending, depths["nuki"]) == (20, QueueDepth(dead=10))
        assert queued_tenants(engine) == ["acme"]
    finally:
        engine.dispose()


def test_every_providers_attempt_and_dead_letter_counters_start_at_zero_so_the_first_one_counts() -> None:
    exposed = generate_latest(DeliveryMetrics().registry).decode()
    for provider in ("hospitable", "whatsapp", "nuki", "beds24"):
        assert f'tenantctl_delivery_dead_lettered_total{{provider="{provider}"}} 0.0' in exposed
        for outcome in ("delivered", "failed", "error"):
            assert f'tenantctl_delivery_attempts_total{{outcome="{outcome}",provider="{provider}"}} 0.0' in exposed


def _plans_of(engine: Engine, run: Callable[[], object]) -> list[str]:
    """The plan of every query and update ``run`` sends, as the database plans it with the parameters sent."""
    sent: list[tuple[str, Any]] = []

    def keep(*args: Any) -> None:
        if str(args[2]).lstrip().upper().startswith(("SELECT", "UPDATE")):
            sent.append((str(args[2]), args[3]))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
    plans = []
    with engine.connect() as conn:
        for sql, params in sent:
            rows = conn.exec_driver_sql(f"{explain} {sql}", params)
            plans.append("\n".join(str(r[-1] if engine.dialect.name == "sqlite" else r[0]) for r in rows))
    return plans


def test_the_dead_are_listed_and_replayed_through_the_queues_index_not_by_reading_the_log(db: Engine) -> None:
    """`webhooks log --state dead`, the log page's "dead" filter and `webhooks replay --dead` in a log of 20,000
    delivered events and 3 dead ones: each statement reads the queue's index and fetches rows by ID, never every
    row of the log (SQLite without statistics, as a log left to grow has none; PostgreSQL with its own)."""
    _delivered_log(db, 20_000)
    insert(db, accepted(3, start=30_000, provider="nuki", at=NOW - timedelta(hours=1)))
    with db.begin() as conn:
        conn.execute(update(webhook_log).where(webhook_log.c.provider == "nuki").values(delivery_state="dead"))
        if db.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE webhook_log")

    listed: list[list[int]] = []
    plans = _plans_of(db, lambda: listed.append([r.id for r in query_log(db, states=["dead"], limit=2)[0]]))
    plans += _plans_of(db, lambda: listed.append([r.id for r in log_page(db, states=["dead"], cursor=20_003)[0]]))
    plans += _plans_of(db, lambda: listed.append([replay(db, now=NOW, dead_only=True, provider="nuki").queued]))
    assert listed == [[20_003, 20_002], [20_002, 20_001], [3]]
    for plan in plans:
        assert "ix_webhook_log_queue" in plan, plan
        assert not re.search(r"^SCAN webhook_log$|Seq Scan on webhook_log", plan, re.M), plan
