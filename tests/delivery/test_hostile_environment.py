"""A hostile environment: a database that is stuck (another session holds its locks), a worker killed with -9
mid-round, two workers on PostgreSQL against a slow platform. The real `tenantctl deliver` against the
sandbox's fake platform, on loopback, every wait bounded."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, func, select, text

from store.schema import webhook_log

from .harness import Stack, accepted, insert, wait_until


def _after_start(log: str) -> str:
    """What the worker logged after its start banner (which names the database itself)."""
    return log.split("deliver: worker", 1)[1].split("\n", 1)[1]


def _delivered(stack: Stack) -> int:
    c = webhook_log.c
    with stack.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(c.delivery_state == "delivered")).scalar_one())


@contextmanager
def _pg_table_locked(stack: Stack) -> Iterator[Connection]:
    """Another session holds ACCESS EXCLUSIVE on webhook_log (a stuck migration, a VACUUM FULL, an operator)."""
    conn = stack.engine.connect()
    tx = conn.begin()
    conn.execute(text("LOCK TABLE webhook_log IN ACCESS EXCLUSIVE MODE"))
    try:
        yield conn
    finally:
        tx.rollback()
        conn.close()


@pytest.mark.postgres
def test_sigterm_stops_the_worker_in_bounded_time_while_postgresql_is_stuck(pg_stack: Stack) -> None:
    stack = pg_stack
    worker = stack.deliver()
    insert(stack.engine, accepted(2))
    wait_until(lambda: _delivered(stack) == 2, 20, worker.logs)
    with _pg_table_locked(stack):
        time.sleep(1.5)  # the worker's next poll is now waiting on the lock
        worker.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = worker.proc.wait(15)
        except Exception:
            code = None
        waited = time.monotonic() - started
    assert code == 0, f"still running {waited:.1f}s after SIGTERM while the database was stuck\n{worker.logs()[-2000:]}"


@pytest.mark.postgres
def test_a_stuck_postgresql_is_reported_and_delivery_resumes_when_it_heals(pg_stack: Stack) -> None:
    stack = pg_stack
    worker = stack.deliver()
    insert(stack.engine, accepted(2))
    wait_until(lambda: _delivered(stack) == 2, 20, worker.logs)
    with _pg_table_locked(stack):
        time.sleep(15)
        logs = worker.logs()
    assert "database" in _after_start(logs), (
        "15 s with the database stuck and not a word in the worker's log\n" + logs[-2000:])
    insert(stack.engine, accepted(2, start=10))
    wait_until(lambda: _delivered(stack) == 4, 30, worker.logs)


def test_a_sqlite_write_lock_held_elsewhere_is_reported_and_delivery_resumes(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.platform.mode(delay_s=0.5)
    worker = stack.deliver()
    insert(stack.engine, accepted(8))
    wait_until(lambda: len(stack.platform.received()) >= 1, 20, worker.logs)
    holder = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, held: outcomes cannot be recorded
    try:
        wait_until(lambda: "database error" in _after_start(worker.logs()), 20, worker.logs)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_until(lambda: _delivered(stack) == 8, 30, worker.logs)
    assert worker.proc.poll() is None


def test_sigterm_stops_the_worker_in_bounded_time_while_sqlite_is_locked(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.platform.mode(delay_s=0.5)
    worker = stack.deliver()
    insert(stack.engine, accepted(8))
    wait_until(lambda: len(stack.platform.received()) >= 1, 20, worker.logs)
    holder = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        time.sleep(1)
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0, worker.logs()[-2000:]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
