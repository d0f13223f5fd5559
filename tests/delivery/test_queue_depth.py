"""The delivery queue's depth per provider, on the worker's /metrics: a rule can watch one provider's queue
(WhatsApp messages stuck while bookings flow), read in one statement per scrape from the queue's indexes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, event, update

from delivery.metrics import DeliveryMetrics
from store.delivery import queue_by_group, queue_stats
from store.migrate import upgrade
from store.queue_depth import QueueDepth, depth_by_provider, depth_by_tenant, statement
from store.schema import webhook_log

from ..conftest import PgSchemas
from .harness import accepted, insert

NOW = datetime.now(UTC)


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
    assert sorted((g.tenant, g.provider, g.pending, g.dead) for g in queue_by_group(db)) == [
        ("acme", "hospitable", 2, 2), ("acme", "whatsapp", 2, 0), ("blue-harbor", "whatsapp", 1, 0)]
    q = queue_stats(db)
    assert (q.pending, q.retrying, q.dead, q.oldest_due_at) == (4, 1, 2, NOW - timedelta(minutes=20))


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


def test_the_queue_is_read_from_its_indexes_never_by_scanning_the_log_on_sqlite(tmp_path: object) -> None:
    """SQLite's plan: the due rows through ix_webhook_log_due, the dead ones through ix_webhook_log_dead (before
    0011 nothing indexed them, and every scrape scanned the whole log)."""
    from store.engine import make_engine

    url = f"sqlite:///{tmp_path}/plan.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        for per_tenant in (False, True):
            sql = str(statement(engine.dialect.name, per_tenant=per_tenant))
            with engine.connect() as conn:
                plan = [str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            reads = [step for step in plan if "webhook_log" in step]
            assert reads == ["SCAN webhook_log USING INDEX ix_webhook_log_due",
                             "SCAN webhook_log USING INDEX ix_webhook_log_dead"], plan
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_queue_is_read_from_its_indexes_never_by_scanning_the_log_on_postgresql(pg_schemas: PgSchemas) -> None:
    """A log of 20,000 delivered events and a queue of 30: the planner, with the log's statistics, reads the queue
    through the two partial indexes and no row of the delivered log."""
    from store.engine import make_engine

    url = pg_schemas.new()
    upgrade(url)
    engine = make_engine(url)
    try:
        for start in range(0, 20_000, 2000):
            insert(engine, accepted(2000, start=start, at=NOW - timedelta(days=1)))
        with engine.begin() as conn:
            conn.execute(update(webhook_log).values(delivery_state="delivered"))
        insert(engine, accepted(20, start=30_000, provider="whatsapp"))
        insert(engine, accepted(10, start=40_000, provider="nuki"))
        with engine.begin() as conn:
            conn.execute(update(webhook_log).where(webhook_log.c.provider == "nuki").values(delivery_state="dead"))
            conn.exec_driver_sql("ANALYZE webhook_log")
        for per_tenant in (False, True):
            sql = str(statement(engine.dialect.name, per_tenant=per_tenant))
            with engine.connect() as conn:
                plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "ix_webhook_log_due" in plan and "ix_webhook_log_dead" in plan, plan
            assert "Seq Scan" not in plan, plan
        depths = depth_by_provider(engine)
        assert (depths["whatsapp"].pending, depths["nuki"]) == (20, QueueDepth(dead=10))
    finally:
        engine.dispose()


def test_every_providers_attempt_and_dead_letter_counters_start_at_zero_so_the_first_one_counts() -> None:
    exposed = generate_latest(DeliveryMetrics().registry).decode()
    for provider in ("hospitable", "whatsapp", "nuki", "beds24"):
        assert f'tenantctl_delivery_dead_lettered_total{{provider="{provider}"}} 0.0' in exposed
        for outcome in ("delivered", "failed", "error"):
            assert f'tenantctl_delivery_attempts_total{{outcome="{outcome}",provider="{provider}"}} 0.0' in exposed
