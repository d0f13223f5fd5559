"""store.health on both backends: runs stored and read back as the newest per (tenant, provider), old ones
pruned; the webhook log's evidence (last accepted, window counts, hourly buckets, the filtered log page)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from store import health as sh
from store import migrate
from store.engine import make_engine
from store.webhook_log import DirectEventStore, WebhookRecord
from tests.conftest import PgSchemas


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        schemas: PgSchemas = request.getfixturevalue("pg_schemas")
        url = schemas.new()
    migrate.upgrade(url)
    e = make_engine(url)
    yield e
    e.dispose()


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _result(tenant: str, provider: str, health: str, at: datetime) -> sh.HealthResult:
    return sh.HealthResult(tenant, provider, f"{provider}.token[{tenant}]", health, None, "d", "h", 1.0, at,
                           "active")


def test_the_newest_run_per_tenant_and_provider_wins_and_old_runs_are_pruned(engine: Engine) -> None:
    sh.record_run(engine, [_result("acme", "nuki", "healthy", NOW - timedelta(days=40))])
    sh.record_run(engine, [_result("acme", "nuki", "degraded", NOW - timedelta(hours=1)),
                           _result("acme", "smtp", "healthy", NOW - timedelta(hours=1))])
    sh.record_run(engine, [_result("acme", "nuki", "healthy", NOW)])
    latest = {(r.provider, r.health) for r in sh.latest(engine)}
    assert latest == {("nuki", "healthy"), ("smtp", "healthy")}
    assert sh.tenants_with_results(engine) == ["acme"]
    assert [r.tenant_status for r in sh.latest(engine, tenants=["acme"])] == ["active", "active"]


def test_the_logs_evidence(engine: Engine) -> None:
    store = DirectEventStore(engine)
    for i, (tenant, provider, outcome, age) in enumerate([
            ("acme", "hospitable", "accepted", timedelta(hours=2)),
            ("acme", "hospitable", "accepted", timedelta(days=3)),
            ("acme", "hospitable", "rejected", timedelta(minutes=5)),
            ("acme", "whatsapp", "accepted", timedelta(minutes=30)),
            ("blue", "hospitable", "accepted", timedelta(days=30))]):
        store.record(WebhookRecord(NOW - age, tenant, provider, outcome, 200 if outcome == "accepted" else 401,
                                   reason=None if outcome == "accepted" else "bad-signature", event_id=f"e{i}"))
    pairs = [("acme", "hospitable"), ("acme", "whatsapp"), ("blue", "hospitable"), ("blue", "nuki")]
    last = sh.last_accepted(engine, pairs)
    assert last == {("acme", "hospitable"): NOW - timedelta(hours=2), ("acme", "whatsapp"): NOW - timedelta(minutes=30),
                    ("blue", "hospitable"): NOW - timedelta(days=30)}
    assert sh.last_accepted(engine) == last
    assert sh.window_counts(engine, ["acme", "blue"], now=NOW) == {("acme", "hospitable"): (1, 1),
                                                                 ("acme", "whatsapp"): (1, 0)}
    hourly = sh.hourly_accepted(engine, ["acme", "blue"], now=NOW)
    assert sum(hourly["acme"]) == 2 and hourly["acme"][-1] == 1 and hourly["acme"][-2] == 1
    assert sum(hourly["blue"]) == 0
    evidence = sh.inbound_evidence(engine, now=NOW, window=timedelta(hours=24))
    assert evidence[("acme", "hospitable")] == sh.Evidence(NOW - timedelta(hours=2), 1)
    assert evidence[("blue", "hospitable")] == sh.Evidence(NOW - timedelta(days=30), 0)
    rows, cursor = sh.log_page(engine, tenant="acme", reason="bad-sig")
    assert [(r.outcome, r.reason) for r in rows] == [("rejected", "bad-signature")] and cursor is None
    assert sh.log_page(engine, reason="BAD-SIG") == ([], None)  # a prefix, case and all, on either database
    assert sh.log_page(engine, reason="bad_sig") == ([], None)  # `_` is a character, not LIKE's wildcard
    page1, cursor = sh.log_page(engine, limit=3)
    page2, end = sh.log_page(engine, limit=3, cursor=cursor)
    assert len(page1) == 3 and len(page2) == 2 and end is None
    assert {r.id for r in page1}.isdisjoint({r.id for r in page2})
