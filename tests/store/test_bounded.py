"""A read a scrape or a page waits on ends at its deadline even when PostgreSQL stops answering on an open
connection (a partition: the kernel still acknowledges, so neither statement_timeout nor TCP timeouts fire),
and the next read after the database answers again works, without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, text

from delivery.metrics import DeliveryMetrics
from store.bounded import read_within
from store.engine import make_engine
from store.errors import DatabaseUnavailable
from store.migrate import upgrade
from store.queue_depth import depth_by_provider
from tests.conftest import PgSchemas
from tests.webhook_server.tcp_proxy import TcpProxy, behind_proxy


@pytest.fixture
def proxied(pg_schemas: PgSchemas) -> Iterator[tuple[TcpProxy, Engine]]:
    url = pg_schemas.new()
    upgrade(url)
    with behind_proxy(url) as (proxy, proxied_url):
        engine = make_engine(proxied_url)
        yield proxy, engine
        proxy.heal()
        engine.dispose()


def _select(engine: Engine, sql: str = "SELECT 1") -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_a_read_that_answers_in_time_gives_its_value_and_its_error(proxied: tuple[TcpProxy, Engine]) -> None:
    _, engine = proxied
    assert read_within(engine, lambda: _select(engine), 5.0) == 1
    with pytest.raises(Exception, match="division by zero"):
        read_within(engine, lambda: _select(engine, "SELECT 1/0"), 5.0)


def test_a_read_on_a_database_that_stops_answering_ends_at_its_deadline_and_the_next_works_once_it_answers(
        proxied: tuple[TcpProxy, Engine]) -> None:
    proxy, engine = proxied
    assert _select(engine) == 1  # a pooled connection, open before the partition
    proxy.hang()
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="did not answer within 1 s"):
        read_within(engine, lambda: _select(engine), 1.0)
    assert time.monotonic() - started < 2
    proxy.heal()
    assert read_within(engine, lambda: _select(engine), 5.0) == 1  # the stuck connection was dropped


def test_the_workers_queue_scrape_says_unreadable_at_its_deadline_when_the_database_stops_answering(
        proxied: tuple[TcpProxy, Engine]) -> None:
    proxy, engine = proxied
    metrics = DeliveryMetrics(lambda: read_within(engine, lambda: depth_by_provider(engine), 1.0),
                              lambda: datetime.now(UTC))
    assert "tenantctl_delivery_queue_up 1.0" in generate_latest(metrics.registry).decode()
    proxy.hang()
    started = time.monotonic()
    exposed = generate_latest(metrics.registry).decode()
    assert time.monotonic() - started < 2
    assert "tenantctl_delivery_queue_up 0.0" in exposed and "tenantctl_delivery_queue_depth{" not in exposed


def test_on_sqlite_the_read_runs_as_it_is(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    try:
        assert read_within(engine, lambda: _select(engine), 0.0) == 1
    finally:
        engine.dispose()
