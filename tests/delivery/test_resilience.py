"""At least once, through a failing platform, a killed worker and several workers: the real `tenantctl deliver`
against the sandbox's fake platform. Timings are short (1 s timeout, backoff capped at 1 s, a 3 s outage)."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from store.schema import delivery_attempts, webhook_log

from .harness import Stack, accepted, free_port, insert, spawn, wait_until

# A fault drill (a failing, slow and down platform, kill -9, dead letters): `make faults` and CI run it,
# apart from `make test`.
pytestmark = pytest.mark.fault


def _expected_ids(stack: Stack) -> set[str]:
    with stack.engine.connect() as conn:
        ids = conn.execute(select(webhook_log.c.id).where(webhook_log.c.outcome == "accepted")).scalars()
        return {f"msg_{i}" for i in ids}


def _states(stack: Stack) -> dict[str, int]:
    c = webhook_log.c
    with stack.engine.connect() as conn:
        rows = conn.execute(select(c.delivery_state, func.count()).group_by(c.delivery_state))
        return {str(state): int(n) for state, n in rows}


def _attempt_outcomes(stack: Stack) -> dict[str, int]:
    a = delivery_attempts.c
    with stack.engine.connect() as conn:
        return {str(o): int(n) for o, n in conn.execute(select(a.outcome, func.count()).group_by(a.outcome))}


def _cli(stack: Stack, *args: str) -> tuple[int, str]:
    proc = spawn(list(args), stack.root / "cli.log", stack.env(), stack.root)
    code = proc.proc.wait(60)
    out = proc.logs()
    (stack.root / "cli.log").unlink()
    return code, out


def test_every_accepted_event_is_delivered_through_failures_timeouts_and_an_outage(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    platform = stack.platform
    platform.mode(fail_percent=50)
    insert(stack.engine, accepted(30))
    worker = stack.deliver()
    wait_until(lambda: platform.delivered_ids() >= _expected_ids(stack), 60, worker.logs)

    # Slower than the worker's 1 s timeout: the attempts time out, and are tried again.
    platform.mode(delay_s=1.5)
    insert(stack.engine, accepted(5, start=100))
    wait_until(lambda: _attempt_outcomes(stack).get("error", 0) >= 5, 30, worker.logs)
    # Then down (503) for 3 s, with more events arriving meanwhile.
    platform.mode(down_for_s=3)
    insert(stack.engine, accepted(5, start=200))
    wait_until(lambda: _states(stack).get("delivered", 0) == 40, 60, worker.logs)

    assert platform.delivered_ids() >= _expected_ids(stack)  # every webhook-id at least once, none missing
    assert len(_expected_ids(stack)) == 40
    statuses = {r["status"] for r in platform.received()}
    assert {204, 500, 503} <= statuses
    outcomes = _attempt_outcomes(stack)
    assert outcomes["delivered"] >= 40 and outcomes["failed"] > 0 and outcomes["error"] >= 5
    assert all(r["signature_ok"] for r in platform.received())


def test_dead_letters_are_kept_counted_shown_and_replayable(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    platform = stack.platform
    platform.mode(fail_percent=100, fail_status=502)
    insert(stack.engine, accepted(3))
    worker = stack.deliver("deliver", "--metrics-port", "0", TENANTCTL_DELIVERY_MAX_ATTEMPTS="3")
    wait_until(lambda: _states(stack).get("dead", 0) == 3, 30, worker.logs)
    assert len(platform.received()) == 9  # three attempts each, then no more
    time.sleep(0.5)
    assert len(platform.received()) == 9

    port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", worker.logs())
    assert port is not None
    metrics = httpx.get(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=5).text
    assert 'tenantctl_delivery_queue_depth{provider="hospitable",state="dead"} 3.0' in metrics
    assert 'tenantctl_delivery_attempts_total{outcome="failed",provider="hospitable"} 9.0' in metrics
    assert 'tenantctl_delivery_dead_lettered_total{provider="hospitable"} 3.0' in metrics
    assert "tenantctl_delivery_queue_up 1.0" in metrics

    code, out = _cli(stack, "webhooks", "stats", "--format", "json")
    assert code == 0
    assert [(s["tenant"], s["pending"], s["dead"]) for s in json.loads(out)] == [("acme", 0, 3)]
    code, out = _cli(stack, "webhooks", "log")
    assert out.count("dead 3x 502 ") == 3 and "(HTTP 502)" not in out  # the error only repeated the status
    code, out = _cli(stack, "webhooks", "log", "--format", "json")
    assert {(r["delivery_state"], r["attempts"], r["last_status"]) for r in json.loads(out)} == {("dead", 3, 502)}
    code, out = _cli(stack, "webhooks", "prune", "--older-than", "0s")
    assert code == 0 and "deleted 0 " in out  # dead letters survive pruning unless told otherwise
    code, out = _cli(stack, "webhooks", "attempts", "1")
    assert code == 0 and out.count("failed    502") == 3

    platform.mode(fail_percent=0)
    code, out = _cli(stack, "webhooks", "replay", "--dead")
    assert code == 0 and "queued 3 event(s)" in out
    wait_until(lambda: _states(stack).get("delivered", 0) == 3, 30, worker.logs)
    assert platform.delivered_ids() == _expected_ids(stack)  # the same webhook-ids as before
    code, out = _cli(stack, "webhooks", "replay", "1")
    assert code == 0 and "queued 1 event(s)" in out
    wait_until(lambda: sum(r["webhook_id"] == "msg_1" and r["status"] == 204 for r in platform.received()) == 2,
               30, worker.logs)
    code, out = _cli(stack, "webhooks", "attempts", "1")  # three failures, then each replay from attempt 1
    lines = [line.split()[0] if line.split()[0] != "--" else "replay" for line in out.splitlines()[1:]]
    assert code == 0 and lines == ["1", "2", "3", "replay", "1", "replay", "1"], out
    code, out = _cli(stack, "webhooks", "replay", "--tenant", "nobody")
    assert code == 1 and "queued 0 event(s)" in out


def test_a_worker_killed_mid_batch_loses_nothing(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    platform = stack.platform
    platform.mode(delay_s=0.4)
    insert(stack.engine, accepted(20))
    first = stack.deliver("first")
    wait_until(lambda: len(platform.received()) >= 5, 30, first.logs)
    first.stop(signal.SIGKILL)  # mid-batch: four requests in flight, their outcomes never written
    assert _states(stack).get("delivered", 0) < 20
    platform.mode(delay_s=0)
    second = stack.deliver("second")  # the kernel freed the SQLite slot; the claims expire with their lease
    wait_until(lambda: _states(stack).get("delivered", 0) == 20, 40, second.logs)
    assert platform.delivered_ids() >= _expected_ids(stack)


def test_sqlite_runs_one_worker_and_a_second_refuses_or_waits(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    port = str(free_port())  # both on one metrics port, as two workers of one host's settings are
    first = stack.deliver("first", TENANTCTL_DELIVER_METRICS_PORT=port)
    second = spawn(["deliver"], stack.root / "second.log", stack.env(), stack.root)
    assert second.proc.wait(60) == 1
    assert f"another delivery worker (pid {first.proc.pid})" in second.logs()
    assert "use PostgreSQL to run several" in second.logs()

    waiting = spawn(["deliver", "--wait"], stack.root / "waiting.log", stack.env(TENANTCTL_DELIVER_METRICS_PORT=port),
                    stack.root)
    stack.procs.append(waiting)
    wait_until(lambda: f"waiting for the delivery worker (pid {first.proc.pid})" in waiting.logs(), 20,
               waiting.logs)
    assert waiting.proc.poll() is None and "deliver: worker" not in waiting.logs()
    assert first.stop() == 0
    # It takes over the slot and the metrics port, freed before the slot.
    wait_until(lambda: "deliver: worker" in waiting.logs(), 20, waiting.logs)
    assert f"metrics on http://127.0.0.1:{port}/metrics" in waiting.logs()
    insert(stack.engine, accepted(2))
    wait_until(lambda: _states(stack).get("delivered", 0) == 2, 20, waiting.logs)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_waiting_for_the_sqlite_slot_stops_at_once_when_told(sqlite_stack: Stack,
                                                                       stop_signal: signal.Signals) -> None:
    stack = sqlite_stack
    first = stack.deliver("first")
    waiting = spawn(["deliver", "--wait"], stack.root / "waiting.log", stack.env(), stack.root)
    stack.procs.append(waiting)
    wait_until(lambda: "waiting for the delivery worker" in waiting.logs(), 20, waiting.logs)
    waiting.proc.send_signal(stop_signal)
    assert waiting.proc.wait(5) == 0, waiting.logs()  # nothing claimed, nothing to finish: a clean stop
    assert f"stopped while waiting for the delivery worker (pid {first.proc.pid})" in waiting.logs()
    assert first.proc.poll() is None  # the running worker is not disturbed


def test_a_second_sqlite_worker_naming_the_database_through_a_symbolic_link_is_refused_too(
        sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    first = stack.deliver("first")
    database = Path(make_url(stack.database_url).database or "")
    alias = stack.root / "elsewhere" / "alias.db"
    alias.parent.mkdir()
    alias.symlink_to(database)
    second = spawn(["deliver"], stack.root / "second.log", stack.env(DATABASE_URL=f"sqlite:///{alias}"), stack.root)
    stack.procs.append(second)  # stopped with the stack should it run (the bug this guards against)
    assert second.proc.wait(60) == 1
    assert f"another delivery worker (pid {first.proc.pid})" in second.logs()


@pytest.mark.postgres
def test_two_workers_on_postgresql_share_the_queue_and_never_send_one_attempt_twice(pg_stack: Stack) -> None:
    stack = pg_stack
    platform = stack.platform
    platform.mode(delay_s=0.1)
    a = stack.deliver("a")
    b = stack.deliver("b")
    insert(stack.engine, accepted(80))  # both workers are polling when the events arrive
    wait_until(lambda: _states(stack).get("delivered", 0) == 80, 60, lambda: a.logs() + b.logs())
    received = platform.received()
    assert len(received) == 80 and {r["webhook_id"] for r in received} == _expected_ids(stack)
    t = delivery_attempts.c
    with stack.engine.connect() as conn:
        per_event = conn.execute(select(t.log_id, func.count()).group_by(t.log_id)).all()
        per_worker = dict(conn.execute(select(t.worker, func.count()).group_by(t.worker)).all())
    assert all(n == 1 for _, n in per_event) and len(per_event) == 80
    assert len(per_worker) == 2 and min(per_worker.values()) >= 10, per_worker


@pytest.mark.postgres
def test_a_worker_whose_database_connections_are_cut_recovers_without_a_restart(pg_stack: Stack) -> None:
    stack = pg_stack
    name = f"deliver-test-{uuid.uuid4().hex[:8]}"
    url = make_url(stack.database_url).update_query_dict({"application_name": name}).render_as_string(
        hide_password=False)
    worker = stack.deliver("deliver", DATABASE_URL=url)
    insert(stack.engine, accepted(3))
    wait_until(lambda: _states(stack).get("delivered", 0) == 3, 20, worker.logs)
    with stack.engine.begin() as conn:  # the database drops the worker's connections
        cut = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = :n"), {"n": name}).scalar_one()
    assert cut >= 1
    insert(stack.engine, accepted(3, start=10))
    wait_until(lambda: _states(stack).get("delivered", 0) == 6, 30, worker.logs)
    assert worker.proc.poll() is None


def test_stats_count_what_waits_and_how_long_the_oldest_has_waited(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    insert(stack.engine, accepted(2, at=datetime.now(UTC) - timedelta(seconds=90)))
    insert(stack.engine, accepted(1, start=5, tenant="blue-harbor"))
    code, out = _cli(stack, "webhooks", "stats", "--format", "json")
    assert code == 0
    rows = {s["tenant"]: s for s in json.loads(out)}
    assert (rows["acme"]["pending"], rows["acme"]["dead"]) == (2, 0)
    assert 90 <= rows["acme"]["oldest_pending_age_s"] < 150
    assert rows["blue-harbor"]["pending"] == 1 and rows["blue-harbor"]["oldest_pending_age_s"] < 60
    code, out = _cli(stack, "webhooks", "stats")
    acme = next(line for line in out.splitlines() if "acme" in line)
    assert re.search(r"│\s+2 │\s+0 │\s+0 │\s+(9\d|1[01]\d)s │$", acme), out  # pending, retrying, dead, oldest
