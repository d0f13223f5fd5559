"""A hostile environment: a database that is stuck (another session holds its locks), a worker killed with -9
mid-round, two workers on PostgreSQL against a slow platform. The real `tenantctl deliver` against the
sandbox's fake platform, on loopback, every wait bounded."""

from __future__ import annotations

import contextlib
import itertools
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, func, select, text

from store.schema import webhook_log
from tests.webhook_server.tcp_proxy import TcpProxy, behind_proxy

from .harness import Proc, Stack, accepted, insert, wait_until

# Fault drills (a stuck or hung database, kill -9): ~90 s of waiting, run by `make faults`, not `make test`.
pytestmark = pytest.mark.fault


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


def _stopped_while_sqlite_is_locked(stack: Stack) -> tuple[Proc, sqlite3.Connection]:
    """A worker delivering 8 events (0.5 s each) gets SIGTERM while another process holds SQLite's write lock;
    returns the worker and the lock's holder (roll it back and close it)."""
    stack.platform.mode(delay_s=0.5)
    worker = stack.deliver()
    insert(stack.engine, accepted(8))
    wait_until(lambda: len(stack.platform.received()) >= 1, 20, worker.logs)
    holder = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(1)
    worker.proc.send_signal(signal.SIGTERM)
    return worker, holder


def test_sigterm_stops_the_worker_in_bounded_time_while_sqlite_is_locked(sqlite_stack: Stack) -> None:
    worker, holder = _stopped_while_sqlite_is_locked(sqlite_stack)
    try:
        assert worker.proc.wait(15) == 0, worker.logs()[-2000:]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _overlaps(received: list[dict[str, Any]], delay_s: float) -> list[str]:
    """The webhook-ids the platform was handling twice at the same time (each request held it ``delay_s``;
    the platform records a request when it answers)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in received:
        spans.setdefault(r["webhook_id"], []).append((r["at"] - delay_s, r["at"]))
    twice = []
    for msg_id, s in spans.items():
        s.sort()
        if any(b[0] < a[1] for a, b in itertools.pairwise(s)):
            twice.append(msg_id)
    return twice


@pytest.mark.postgres
def test_two_workers_on_postgresql_never_deliver_one_webhook_id_twice_at_once_to_a_slow_platform(
        pg_stack: Stack) -> None:
    stack = pg_stack
    delay = 0.8  # slow, but inside the workers' 1 s read timeout
    stack.platform.mode(delay_s=delay, fail_percent=30)
    a = stack.deliver("a", TENANTCTL_DELIVERY_CONCURRENCY="8")
    b = stack.deliver("b", TENANTCTL_DELIVERY_CONCURRENCY="8")
    insert(stack.engine, accepted(48))
    wait_until(lambda: _delivered(stack) == 48, 90, lambda: a.logs() + b.logs())
    received = stack.platform.received()
    assert {r["webhook_id"] for r in received if r["status"] < 300} == _accepted_ids(stack)
    assert _overlaps(received, delay) == []


@pytest.mark.postgres
def test_a_worker_killed_with_sigkill_mid_round_loses_no_event_after_a_restart(pg_stack: Stack) -> None:
    stack = pg_stack
    stack.platform.mode(delay_s=0.2)
    first = stack.deliver("first", TENANTCTL_DELIVERY_CONCURRENCY="16")
    insert(stack.engine, accepted(150))
    wait_until(lambda: len(stack.platform.received()) >= 40, 30, first.logs)
    first.stop(signal.SIGKILL)  # claims ahead, attempts in flight, outcomes unrecorded
    assert _delivered(stack) < 150
    stack.platform.mode(delay_s=0)
    second = stack.deliver("second", TENANTCTL_DELIVERY_CONCURRENCY="16")
    wait_until(lambda: _delivered(stack) == 150, 60, second.logs)
    assert stack.platform.delivered_ids() >= _accepted_ids(stack)
    assert second.stop() == 0


def _accepted_ids(stack: Stack) -> set[str]:
    with stack.engine.connect() as conn:
        ids = conn.execute(select(webhook_log.c.id).where(webhook_log.c.outcome == "accepted")).scalars()
        return {f"msg_{i}" for i in ids}


@pytest.mark.postgres
def test_a_hung_database_server_is_reported_delivery_resumes_when_it_heals_and_sigterm_still_stops_the_worker(
        pg_stack: Stack) -> None:
    stack = pg_stack
    with behind_proxy(stack.database_url) as (proxy, proxied_url):
        _a_hung_database_server(stack, proxy, proxied_url)


def _a_hung_database_server(stack: Stack, proxy: TcpProxy, proxied_url: str) -> None:
    worker = stack.deliver(DATABASE_URL=proxied_url)
    insert(stack.engine, accepted(2))
    wait_until(lambda: _delivered(stack) == 2, 20, worker.logs)
    proxy.hang()  # the next poll's query is sent and never answered
    insert(stack.engine, accepted(2, start=10))
    time.sleep(12)
    assert "database" in _after_start(worker.logs()), "12 s of a hung database, not a word in the log"
    proxy.heal()  # healed: the round gets its answer
    wait_until(lambda: _delivered(stack) == 4, 30, worker.logs)
    # Reported stuck (12 s without an answer), then its end, so the log does not leave the alarm standing.
    assert "no answer for" in worker.logs() and "the database answered again" in worker.logs(), worker.logs()
    proxy.hang()
    insert(stack.engine, accepted(2, start=20))
    time.sleep(1)
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = worker.proc.wait(20)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"still running 20 s after SIGTERM while the database hangs\n{worker.logs()[-2000:]}"


@contextmanager
def _silent_platform() -> Iterator[str]:
    """A platform that accepts TCP connections, reads the request and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    closed = threading.Event()

    def accept() -> None:
        while not closed.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/platform/hospitable"
    finally:
        closed.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        acceptor.join(5)
        for conn in held:
            conn.close()


def test_sigterm_with_attempts_hanging_on_a_silent_platform_exits_0_within_the_deadline(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    with _silent_platform() as url:
        worker = stack.deliver(TENANTCTL_DELIVERY_URL_HOSPITABLE=url, TENANTCTL_DELIVERY_TIMEOUT_S="3")
        insert(stack.engine, accepted(4))
        time.sleep(1)  # four attempts are waiting for an answer that never comes
        worker.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.proc.wait(20) == 0, worker.logs()
        took = time.monotonic() - started
    assert took < 3 + 3 + 2, took  # their connect + read deadline, then the last round
    c = webhook_log.c
    with stack.engine.connect() as conn:
        states = conn.execute(select(c.delivery_state, c.last_error)).all()
    assert set(states) == {("retrying", "timeout")}, states  # each attempt recorded, the event kept


def test_a_stop_says_it_waits_for_the_attempts_in_flight_and_a_second_signal_stops_at_once(sqlite_stack: Stack) -> None:
    """At a terminal the wait for the attempts in flight (up to connect + read timeout) looked like a hang, and a
    second Ctrl-C did nothing. The second signal ends the worker at once; its attempts' events stay claimed and
    are delivered again after their lease (at least once)."""
    stack = sqlite_stack
    with _silent_platform() as url:
        worker = stack.deliver(TENANTCTL_DELIVERY_URL_HOSPITABLE=url, TENANTCTL_DELIVERY_TIMEOUT_S="30")
        insert(stack.engine, accepted(2))
        wait_until(lambda: _claimed_in(stack.engine) == 2, 20, worker.logs)
        time.sleep(0.3)  # both attempts started, waiting for an answer that never comes
        worker.proc.send_signal(signal.SIGINT)
        wait_until(lambda: "finishing 2 attempt(s) in flight (up to 35s)" in worker.logs(), 10, worker.logs)
        assert "a second Ctrl-C or SIGTERM stops at once" in worker.logs()
        worker.proc.send_signal(signal.SIGINT)
        worker.proc.send_signal(signal.SIGTERM)  # a third, while it exits: still exit 1, not killed by it
        assert worker.proc.wait(10) == 1, worker.logs()
    assert "stopped at once on a second signal" in worker.logs()
    assert "Traceback" not in worker.logs()
    assert _claimed_in(stack.engine) == 2  # left to their lease, then due again: nothing lost


def _claimed_in(engine: Engine) -> int:
    c = webhook_log.c
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(c.claimed_by.is_not(None))).scalar_one())


def test_a_database_too_slow_to_claim_a_full_batch_in_time_still_delivers_every_event(
        db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim costs the database per event claimed (SQLite rewrites each row, body included: 128 bodies of 1 MB
    took 3 s here). A round too slow to start its events inside their lease leaves them to it; the worker then
    claims fewer at a time instead of claiming (and missing) the same full batch again at every lease's end."""
    import delivery.worker as worker_module
    from delivery.destinations import Destinations
    from delivery.retry import RetryPolicy
    from delivery.worker import Worker, WorkerConfig
    from outbound.policy import OutboundPolicy, allow_list

    from .test_worker import KEY, URL, ScriptedSender

    real = worker_module.cycle

    def slow(*args: Any, **kwargs: Any) -> Any:
        items = real(*args, **kwargs)
        time.sleep(0.03 * len(items))  # 30 ms per event claimed: 8 of them outlast the 0.2 s start window
        return items

    monkeypatch.setattr(worker_module, "cycle", slow)
    insert(db, accepted(12))
    policy = OutboundPolicy(allowed_hosts=allow_list([URL]), timeout_s=0.2, connect_timeout_s=0.2)
    config = WorkerConfig(policy=policy, retry=RetryPolicy(), keys=[KEY], concurrency=4, poll_s=0.05,
                          lease_margin_s=0.4)  # a lease of 0.8 s; events start within 0.2 s of their claim
    worker = Worker(db, Destinations({"hospitable": URL}), config,
                    ScriptedSender(policy, lambda r: httpx.Response(204)), worker_id="w1")
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while _delivered_in(db) < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        runner.join(10)
        worker.close()
    assert _delivered_in(db) == 12


def _delivered_in(engine: Engine) -> int:
    c = webhook_log.c
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(c.delivery_state == "delivered")).scalar_one())


def test_sigterm_starts_no_new_attempt_and_hands_back_the_events_claimed_ahead(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    stack.platform.mode(delay_s=1.5)
    worker = stack.deliver(TENANTCTL_DELIVERY_CONCURRENCY="2", TENANTCTL_DELIVERY_TIMEOUT_S="3")
    insert(stack.engine, accepted(6))
    time.sleep(0.5)  # two attempts in flight, two more events claimed ahead, waiting for a slot
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(20) == 0, worker.logs()
    assert len(stack.platform.received()) == 2  # the two in flight were finished; nothing new was started
    c = webhook_log.c
    with stack.engine.connect() as conn:
        waiting = conn.execute(select(c.claimed_by, c.attempts).where(c.delivery_state == "pending")).all()
    assert sorted(waiting) == [(None, 0)] * 4  # due at once for the next worker, not after a lease


def test_outcomes_in_hand_at_sigterm_are_recorded_once_a_lock_held_elsewhere_is_released(
        sqlite_stack: Stack) -> None:
    """A worker stopping while another process holds SQLite's write lock retries its round for a few seconds (one
    attempt waits out busy_timeout, 5 s, and fails): released within them, the outcomes are recorded and no event
    is delivered again after its lease."""
    stack = sqlite_stack
    worker, holder = _stopped_while_sqlite_is_locked(stack)
    try:
        wait_until(lambda: "database error" in _after_start(worker.logs()), 15, worker.logs)
        time.sleep(0.5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert worker.proc.wait(15) == 0, worker.logs()[-2000:]
    assert "unrecorded" not in worker.logs()
    delivered = {r["webhook_id"] for r in stack.platform.received() if r["status"] < 300}
    assert _delivered(stack) == len(delivered)  # every 2xx the platform gave is recorded as delivered
