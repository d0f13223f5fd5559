"""The real server's worker models: gevent by default (SQLite commits in a native thread, PostgreSQL waits
that yield), gthread as the fallback. Each is driven over HTTP with concurrent requests: every 200 has its
row, a database that cannot commit answers 503, and the provider's retry is stored exactly once."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from store.migrate import upgrade

from ..conftest import PgSchemas
from .helpers import tenant_dicts
from .server_harness import Server, accepted_events, hosp, make_tenants_dir, start_server

pytestmark = pytest.mark.slow


def deliver(client: httpx.Client, event: str) -> int:
    return hosp(client, event).status_code


def deliver_concurrently(server: Server, events: list[str]) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda e: deliver(client, e), events))


def accepted_pg(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT event_id FROM webhook_log WHERE outcome = 'accepted'")).scalars())
    finally:
        engine.dispose()


@pytest.fixture
def pg_server(tmp_path: Path, pg_schemas: PgSchemas) -> Iterator[tuple[Server, str]]:
    url = pg_schemas.new()
    upgrade(url)
    s = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]), migrate=False, DATABASE_URL=url)
    yield s, url
    s.stop()


def test_the_default_worker_is_gevent_and_sqlite_keeps_every_accepted_event(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]))
    try:
        events = [f"g-{i}" for i in range(300)]
        assert deliver_concurrently(server, events) == [200] * len(events)
        assert sorted(accepted_events(server)) == sorted(events)
        # gunicorn's gevent worker, with the per-request deadline (webhook_server/worker.py)
        assert "Using worker: webhook_server.worker.DeadlineGeventWorker" in server.logs()
    finally:
        server.stop()


def test_gthread_remains_a_working_fallback(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                          serve_args=("--worker-class", "gthread"))
    try:
        events = [f"t-{i}" for i in range(100)]
        assert deliver_concurrently(server, events) == [200] * len(events)
        assert sorted(accepted_events(server)) == sorted(events)
        assert "Using worker: gthread" in server.logs()
    finally:
        server.stop()


@pytest.mark.postgres
def test_postgres_under_gevent_stores_every_event_once_and_refuses_with_503_when_it_cannot(
        pg_server: tuple[Server, str]) -> None:
    server, url = pg_server
    events = [f"p-{i}" for i in range(300)]
    assert deliver_concurrently(server, events) == [200] * len(events)
    assert deliver_concurrently(server, events[:50]) == [200] * 50  # replays: 200, stored once
    assert sorted(accepted_pg(url)) == sorted(events)

    admin = create_engine(url)
    try:
        with admin.begin() as conn:  # the log table is gone: no commit can succeed
            conn.execute(text("ALTER TABLE webhook_log RENAME TO webhook_log_away"))
        try:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                assert deliver(c, "during-outage") == 503
        finally:
            with admin.begin() as conn:
                conn.execute(text("ALTER TABLE webhook_log_away RENAME TO webhook_log"))
    finally:
        admin.dispose()
    assert "during-outage" not in accepted_pg(url)

    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert deliver(c, "during-outage") == 200  # the provider's retry
        assert deliver(c, "during-outage") == 200
        assert c.get("/readyz").status_code == 200
    assert accepted_pg(url).count("during-outage") == 1


def test_a_worker_waiting_for_the_sqlite_write_lock_keeps_serving(tmp_path: Path) -> None:
    """Another process (a long `webhooks prune`, say) holds the database's writer lock: the webhook waits
    for it, but the worker's event loop does not freeze, so health checks still answer at once."""
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]), TENANTCTL_WORKERS="1")
    try:
        lock_fd = os.open(server.state / "tenantctl.db.write-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            with httpx.Client(base_url=server.url, timeout=30) as c, ThreadPoolExecutor(1) as pool:
                pending = pool.submit(deliver, c, "while-locked")
                time.sleep(0.5)
                assert not pending.done()  # it waits for the lock: no 200 before its commit
                started = time.monotonic()
                assert c.get("/healthz").status_code == 200
                assert time.monotonic() - started < 0.5
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                assert pending.result(timeout=10) == 200
        finally:
            os.close(lock_fd)
        assert accepted_events(server) == ["while-locked"]
    finally:
        server.stop()
