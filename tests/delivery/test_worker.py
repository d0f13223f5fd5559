"""The worker in process, against a scripted platform (httpx requests and responses as data): claims and leases,
Retry-After, redirects, lost claims, and the ordering it promises (none: a failing event holds back no other)."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from delivery.destinations import Destinations
from delivery.retry import RetryPolicy
from delivery.worker import Worker, WorkerConfig
from outbound.policy import Answer, OutboundPolicy, allow_list, check_url
from store.delivery import Claimed, claim_due, finish, replay
from store.migrate import upgrade
from store.schema import webhook_log
from store.webhook_log import query_log

from ..conftest import PgSchemas
from .harness import accepted, insert

URL = "https://platform.example.com/in"
KEY = base64.b64decode(base64.b64encode(b"k" * 32))
POLICY = OutboundPolicy(allowed_hosts=allow_list([URL]), timeout_s=1, connect_timeout_s=1)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class ScriptedSender:
    """The sender's interface over a function from request to response; the URL rules still apply."""

    def __init__(self, policy: OutboundPolicy, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.policy, self.handler = policy, handler

    async def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Answer:
        check_url(self.policy, url)
        response = self.handler(httpx.Request("POST", url, content=content, headers=dict(headers)))
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                      response.content[:self.policy.max_response_bytes], 0.001)

    async def close(self) -> None:
        pass


def _worker(engine: Engine, handler: Callable[[httpx.Request], httpx.Response], clock: Clock,
            **retry: object) -> Worker:
    config = WorkerConfig(policy=POLICY, retry=RetryPolicy(**retry), keys=[KEY], concurrency=2)  # type: ignore[arg-type]
    return Worker(engine, Destinations({"hospitable": URL}), config, ScriptedSender(POLICY, handler),
                  worker_id="w1", now=clock, jitter=lambda: 1.0)


def _state(engine: Engine) -> dict[str, tuple[str | None, int, int | None]]:
    rows, _ = query_log(engine)
    return {r.event_id or "": (r.delivery_state, r.attempts, r.last_status) for r in rows}


def test_a_failing_event_holds_back_no_other(db: Engine) -> None:
    """Ordering: none guaranteed. The first event fails and is retried later; the ones after it go at once,
    each carrying its receive time for the platform to order by."""
    seen: list[tuple[str, str]] = []

    def platform(request: httpx.Request) -> httpx.Response:
        event = request.headers["x-tenantctl-event-id"]
        seen.append((event, request.headers["x-tenantctl-received-at"]))
        return httpx.Response(500 if event == "evt-0" else 204)

    t0 = datetime.now(UTC) - timedelta(seconds=10)
    for i, rec in enumerate(accepted(4)):
        insert(db, [rec.__class__(**{**rec.__dict__, "received_at": t0 + timedelta(seconds=i)})])
    clock = Clock()
    worker = _worker(db, platform, clock, base_delay_s=60, max_delay_s=60)
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    state = _state(db)
    assert state["evt-0"] == ("retrying", 1, 500)
    assert all(state[f"evt-{i}"] == ("delivered", 1, 204) for i in (1, 2, 3))
    assert sorted(seen) == sorted(seen, key=lambda s: s[1])  # receive times name the order, evt-0 first


def test_429_retry_after_is_honoured_and_a_redirect_is_a_failure(db: Engine) -> None:
    def platform(request: httpx.Request) -> httpx.Response:
        if request.headers["x-tenantctl-event-id"] == "evt-0":
            return httpx.Response(429, headers={"retry-after": "120"})
        return httpx.Response(301, headers={"location": "https://elsewhere.example.com/"})

    insert(db, accepted(2))
    clock = Clock()
    worker = _worker(db, platform, clock, base_delay_s=1, max_delay_s=1)
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    # Not due before the Retry-After; the redirect retries on the usual backoff (1 s here).
    c = webhook_log.c
    with db.connect() as conn:
        due = dict(conn.execute(select(c.event_id, c.next_attempt_at)).all())
    assert due == {"evt-0": clock.now + timedelta(seconds=120), "evt-1": clock.now + timedelta(seconds=1)}
    rows, _ = query_log(db)
    assert {r.event_id: r.last_error for r in rows} == {"evt-0": "HTTP 429", "evt-1": "HTTP 301: redirect refused"}


def test_a_claim_holds_until_its_lease_ends_then_the_event_is_due_again(db: Engine) -> None:
    insert(db, accepted(3))
    now = datetime.now(UTC)
    lease = timedelta(seconds=30)
    first = claim_due(db, claim="w1:a", now=now, lease=lease, limit=2, providers=["hospitable"])
    second = claim_due(db, claim="w2:a", now=now, lease=lease, limit=10, providers=["hospitable"])
    assert {c.event_id for c in first} == {"evt-0", "evt-1"} and [c.event_id for c in second] == ["evt-2"]
    assert claim_due(db, claim="w2:b", now=now + lease / 2, lease=lease, limit=10, providers=["hospitable"]) == []
    # Both workers died: after the lease the events are due again, their attempts counted.
    again = claim_due(db, claim="w2:c", now=now + lease * 2, lease=lease, limit=10, providers=["hospitable"])
    assert sorted((c.event_id, c.attempt) for c in again) == [("evt-0", 2), ("evt-1", 2), ("evt-2", 2)]
    assert claim_due(db, claim="w3", now=now, lease=lease, limit=10, providers=["nuki"]) == []


def test_a_late_answer_does_not_undo_a_replay(db: Engine) -> None:
    insert(db, accepted(1))
    now = datetime.now(UTC)
    [item] = claim_due(db, claim="w1:a", now=now, lease=timedelta(seconds=30), limit=1, providers=["hospitable"])
    # An operator replays once the lease has run out, while the attempt still hangs on (a stuck worker).
    assert replay(db, now=now + timedelta(seconds=31), ids=[item.id]).queued == 1
    from store.delivery import Finished

    late = Finished(item, now, "w1", "failed", 500, 3.0, "HTTP 500", "dead", None, None)
    assert finish(db, [late]) == 0  # the attempt is recorded; the state stays the replay's
    assert _state(db)["evt-0"] == ("pending", 0, None)


def test_a_replayed_dead_letter_gets_the_whole_retry_budget_again_however_old_it_is(db: Engine) -> None:
    """Dead letters of a long outage are what gets replayed: the age limit counts from the replay, so one
    more transient failure makes it retried, not dead again at once."""
    clock = Clock()
    insert(db, accepted(1, at=clock.now - timedelta(days=4)))  # older than the 3-day age limit
    worker = _worker(db, lambda r: httpx.Response(503), clock, max_age=timedelta(days=3))
    worker.run(threading.Event(), until_idle=True)
    assert _state(db)["evt-0"] == ("dead", 1, 503)  # past the age limit already: no retry after a failure
    assert replay(db, now=clock.now, dead_only=True).queued == 1
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    assert _state(db)["evt-0"] == ("retrying", 1, 503)


@pytest.mark.parametrize("state", ["rejected", "duplicate"])
def test_rejected_and_duplicate_rows_are_never_queued(db: Engine, state: str) -> None:
    [rec] = accepted(1)
    insert(db, [rec.__class__(**{**rec.__dict__, "outcome": state, "body": None})])
    assert claim_due(db, claim="w", now=datetime.now(UTC), lease=timedelta(seconds=5), limit=5,
                     providers=["hospitable"]) == []
    assert replay(db, now=datetime.now(UTC), tenant="acme").queued == 0


def test_replay_selects_by_tenant_provider_time_and_state(db: Engine) -> None:
    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    insert(db, accepted(2, at=t0) + accepted(1, start=10, at=t0 + timedelta(hours=2), provider="whatsapp")
           + accepted(1, start=20, at=t0 + timedelta(hours=4), tenant="blue-harbor"))
    now = datetime.now(UTC)
    assert replay(db, now=now, provider="whatsapp").queued == 1
    assert replay(db, now=now, tenant="blue-harbor").queued == 1
    assert replay(db, now=now, since=t0 + timedelta(hours=1), until=t0 + timedelta(hours=3)).queued == 1  # evt-10
    assert replay(db, now=now, tenant="acme", provider="hospitable", until=t0 + timedelta(minutes=1)).queued == 2
    assert replay(db, now=now, dead_only=True).queued == 0  # nothing is dead


def test_a_database_error_is_reported_and_the_round_retried(db: Engine, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import OperationalError

    import delivery.worker as worker_module
    from store.delivery import cycle as real

    failures = [2]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE webhook_log", {}, Exception("database is locked"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "cycle", flaky)
    insert(db, accepted(2))
    worker = _worker(db, lambda request: httpx.Response(204), Clock())
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    assert "database error, retrying" in caplog.text and caplog.text.count("OperationalError") == 2
    assert all(s == ("delivered", 1, 204) for s in _state(db).values())


def test_a_database_error_names_the_drivers_reason_and_the_recovery_is_logged(
        db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The operator reads why (the driver's first line: no SQL, no parameters, no secret, no control
    character), and a line when the rounds succeed again, with how many failed."""
    from sqlalchemy.exc import OperationalError

    import delivery.worker as worker_module
    from store.delivery import cycle as real
    from tenancy.redact import REDACTOR

    REDACTOR.add("s3cret-db-password")
    failures = [2]

    def flaky(*args: object, **kwargs: object) -> object:
        if failures[0]:
            failures[0] -= 1
            raise OperationalError("UPDATE webhook_log SET x = ?", {"x": "a-parameter"}, Exception(
                "connection to server at \"db.internal\" (10.0.0.5), port 5432 failed: Connection refused "
                "(password s3cret-db-password)\x1b[2J\n\tIs the server running on that host?"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "cycle", flaky)
    caplog.set_level(logging.INFO, logger="delivery.worker")
    insert(db, accepted(1))
    worker = _worker(db, lambda request: httpx.Response(204), Clock())
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    errors = [r.getMessage() for r in caplog.records if "database error" in r.getMessage()]
    assert len(errors) == 2
    assert "retrying in" in errors[0] and "OperationalError: connection to server at \"db.internal\" (10.0.0.5), " \
        "port 5432 failed: Connection refused" in errors[0]
    text = caplog.text
    assert "s3cret-db-password" not in text and "\x1b" not in text and "a-parameter" not in text
    assert "UPDATE" not in text and "Is the server running" not in text
    assert "delivery: database reachable again after 2 failed round(s)" in text
    assert text.count("reachable again") == 1


def test_a_claim_reads_the_due_index_not_the_whole_log(db: Engine) -> None:
    """The claim query implies the partial index's predicate, so the planner may use it: on a log of
    millions of rows a claim reads only the queue, each provider from its own range of the index (SQLite's
    plan names it; the only sort left is of the at most N rows taken from each provider)."""
    from store.delivery import _claim_sql
    from store.schema import DUE_PREDICATE

    sql = _claim_sql(db.dialect.name, 2)  # the statement a claim runs, two providers
    assert DUE_PREDICATE in sql  # as written, not as bound parameters
    if db.dialect.name == "sqlite":
        at = "2030-01-01 00:00:00.000000"
        params = ("w", at, "hospitable", at, 64, "whatsapp", at, 64, 64)
        with db.connect() as conn:
            plan = [str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
        searches = [step for step in plan if "webhook_log" in step and "PRIMARY KEY" not in step]
        assert searches == ["SEARCH webhook_log USING INDEX ix_webhook_log_due (provider=? AND next_attempt_at<?)"] * 2


@pytest.mark.postgres
def test_a_claim_on_a_backlog_the_statistics_have_not_seen_reads_only_what_it_takes(pg_schemas: PgSchemas) -> None:
    """A burst fills the queue faster than autovacuum re-analyzes the log: the planner believes it nearly
    empty. The claim must still walk the due index in its order and stop after LIMIT rows, rather than read
    and sort the whole backlog (the plan it chose before: a bitmap scan of every due row, then a sort). Nor
    does it read the events of a provider it does not deliver (no destination: they stay pending), even
    when they are the oldest."""
    import re

    from store.delivery import _claim_sql, worker_engine

    url = pg_schemas.new()
    upgrade(url)
    pg_engine = worker_engine(url)  # a delivery worker's sessions
    for start in range(0, 5000, 1000):
        insert(pg_engine, accepted(1000, start=start, provider="nuki", at=datetime.now(UTC) - timedelta(seconds=9)))
        insert(pg_engine, accepted(1000, start=start, at=datetime.now(UTC) - timedelta(seconds=1)))
    sql = _claim_sql("postgresql", 1).replace("%s", "{}").format(
        "'w'", "now() + interval '1 minute'", "ARRAY['hospitable']", "now()", 64, 64)
    with pg_engine.begin() as conn:
        plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
        claimed = conn.exec_driver_sql("SELECT provider, count(*) FROM webhook_log WHERE claimed_by = 'w' "
                                       "GROUP BY provider").all()
    pg_engine.dispose()
    assert [tuple(row) for row in claimed] == [("hospitable", 64)]
    scans = re.findall(r"Index Scan using ix_webhook_log_due .*actual time=\S+ rows=(\d+) loops=(\d+)", plan)
    assert scans == [("64", "1")], plan  # 64 entries read, of 10,000 due
    assert "Rows Removed by Filter" not in plan, plan  # no other provider's event read past
    assert "Bitmap" not in plan and "Seq Scan" not in plan, plan


def test_a_workers_database_settings_are_its_transactions_own_so_a_pooled_connection_passes_none_on(
        pg_schemas: PgSchemas) -> None:
    """Behind a transaction-pooling PgBouncer, the server connection one of the worker's transactions used
    serves any client's next transaction, the webhook server's included, whose commit must wait for the
    disk. So the worker's relaxed commit and claim plan hold inside its transactions and end with them."""
    from store.delivery import worker_engine
    from store.engine import make_engine

    show = "SELECT current_setting('synchronous_commit'), current_setting('enable_bitmapscan')"
    url = pg_schemas.new()
    plain = make_engine(url)
    with plain.connect() as conn:
        defaults = tuple(conn.exec_driver_sql(show).one())
    plain.dispose()
    engine = worker_engine(url)
    with engine.connect() as conn:
        inside = tuple(conn.exec_driver_sql(show).one())
        conn.commit()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        cur.execute(show)  # the same server connection, in a transaction the worker did not begin
        after = tuple(cur.fetchone() or ())
        raw.rollback()
    engine.dispose()
    assert inside == ("off", "off")
    assert after == defaults != inside


def test_an_event_claimed_by_a_round_too_slow_to_start_it_inside_its_lease_is_left_to_the_lease(
        db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A claim whose round returned later than half the lease margin is not attempted (the attempt could
    outlive the lease and run beside another worker's); the event is due again when the lease ends, its attempt
    uncounted (none was made: the first real one is attempt 1, and a slow database spends none of the limit)."""
    import time as time_module

    import delivery.worker as worker_module
    from store.delivery import cycle as real

    def slow(*args: object, **kwargs: object) -> object:
        items = real(*args, **kwargs)  # type: ignore[arg-type]
        time_module.sleep(0.3)  # a commit stuck behind another writer
        return items

    monkeypatch.setattr(worker_module, "cycle", slow)
    insert(db, accepted(2))
    posted: list[str] = []

    def platform(request: httpx.Request) -> httpx.Response:
        posted.append(request.headers["webhook-id"])
        return httpx.Response(204)

    config = WorkerConfig(policy=POLICY, retry=RetryPolicy(), keys=[KEY], concurrency=2, lease_margin_s=0.4)
    worker = Worker(db, Destinations({"hospitable": URL}), config, ScriptedSender(POLICY, platform), worker_id="w1")
    started = datetime.now(UTC)
    worker.run(threading.Event(), until_idle=True)
    worker.close()
    assert posted == []
    assert {s for s in _state(db).values()} == {("pending", 0, None)}  # claimed once, never attempted
    c = webhook_log.c
    with db.connect() as conn:
        due = conn.execute(select(c.next_attempt_at)).scalars().all()
    assert all(at >= started + config.lease for at in due)  # not before the lease ends


def _run_bounded(worker: Worker, seconds: float) -> float:
    """Run ``worker`` until idle, but stop it after ``seconds`` at most (a wedged worker ends the test, not CI)."""
    import time as time_module

    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    began = time_module.monotonic()
    try:
        worker.run(stop, until_idle=True)
    finally:
        timer.cancel()
        worker.close()
    return time_module.monotonic() - began


def _attempted(engine: Engine) -> dict[str, list[int]]:
    from store.schema import delivery_attempts

    a, c = delivery_attempts.c, webhook_log.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.event_id, a.attempt).join_from(delivery_attempts, webhook_log,
                                                                    a.log_id == c.id).order_by(a.id))
        out: dict[str, list[int]] = {}
        for event_id, attempt in rows:
            out.setdefault(event_id, []).append(attempt)
        return out


def test_the_outcome_of_an_event_deleted_during_its_attempt_is_dropped_and_the_rest_recorded(db: Engine) -> None:
    """An event deleted while its attempt runs (`webhooks prune --include-undelivered`, or any DELETE) leaves
    nothing for its outcome to describe: the outcome is dropped (no attempt row pointing at no event), and
    the other outcomes of the same round are recorded."""
    from sqlalchemy import delete

    from store.delivery import Finished

    insert(db, accepted(3))
    now = datetime.now(UTC)
    items = claim_due(db, claim="w1:a", now=now, lease=timedelta(seconds=30), limit=3, providers=["hospitable"])
    gone = next(i for i in items if i.event_id == "evt-1")
    with db.begin() as conn:
        conn.execute(delete(webhook_log).where(webhook_log.c.id == gone.id))
    results = [Finished(i, now, "w1", "delivered", 204, 3.0, None, "delivered", None, now) for i in items]
    assert finish(db, results) == 2
    assert _state(db) == {"evt-0": ("delivered", 1, 204), "evt-2": ("delivered", 1, 204)}
    assert _attempted(db) == {"evt-0": [1], "evt-2": [1]}


def test_a_worker_whose_event_is_deleted_mid_attempt_goes_on_delivering(db: Engine,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The platform is answering evt-0 when an operator prunes it: the worker records the others' outcomes
    and claims on, without a database error (it had retried the failing round forever)."""
    from sqlalchemy import delete

    def platform(request: httpx.Request) -> httpx.Response:
        if request.headers["x-tenantctl-event-id"] == "evt-0":
            with db.begin() as conn:
                conn.execute(delete(webhook_log).where(webhook_log.c.event_id == "evt-0"))
        return httpx.Response(204)

    insert(db, accepted(5))  # two slots: the last ones are claimed by the rounds that record the first
    worker = _worker(db, platform, Clock())
    worker.config = replace(worker.config, poll_s=0.05)
    assert _run_bounded(worker, 15) < 10
    assert "database error" not in caplog.text
    assert _state(db) == {f"evt-{i}": ("delivered", 1, 204) for i in (1, 2, 3, 4)}


@pytest.mark.postgres
def test_an_attempt_recorded_while_its_event_is_being_deleted_is_dropped_once_the_delete_commits(
        pg_schemas: PgSchemas) -> None:
    """PostgreSQL: the prune's DELETE has not committed when the round records the event's attempt. The round
    waits for it (the foreign key's own lock), then finds no event and drops the outcome, rather than fail."""
    import time as time_module

    from sqlalchemy import delete

    from store.delivery import Finished
    from store.engine import make_engine

    url = pg_schemas.new()
    upgrade(url)
    engine = make_engine(url)
    insert(engine, accepted(2))
    now = datetime.now(UTC)
    items = claim_due(engine, claim="w1:a", now=now, lease=timedelta(seconds=30), limit=2, providers=["hospitable"])
    pruning = engine.connect()
    transaction = pruning.begin()
    pruning.execute(delete(webhook_log).where(webhook_log.c.id == items[0].id))

    def commit_later() -> None:
        time_module.sleep(0.5)
        transaction.commit()
        pruning.close()

    committer = threading.Thread(target=commit_later)
    committer.start()
    try:
        results = [Finished(i, now, "w1", "delivered", 204, 3.0, None, "delivered", None, now) for i in items]
        assert finish(engine, results) == 1
    finally:
        committer.join()
    assert _attempted(engine) == {"evt-1": [1]}
    engine.dispose()


def test_an_outcome_that_fails_its_round_on_every_retry_is_dropped_and_the_others_recorded(
        db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A round that fails on what it writes (an integrity or data error: retrying the same round cannot cure it)
    does not wedge the worker: its outcomes are recorded one a round, and the one that still fails is dropped
    (its event stays claimed, delivered again after its lease) while every other outcome is recorded."""
    from sqlalchemy.exc import IntegrityError

    import delivery.worker as worker_module
    from store.delivery import Finished, cycle

    def poisoned(engine: Engine, results: list[Finished], **kwargs: Any) -> list[Claimed]:
        if any(r.item.event_id == "evt-0" for r in results):
            raise IntegrityError("INSERT INTO delivery_attempts", {}, Exception("constraint failed"))
        return cycle(engine, results, **kwargs)

    monkeypatch.setattr(worker_module, "cycle", poisoned)
    insert(db, accepted(5))
    worker = _worker(db, lambda request: httpx.Response(204), Clock())
    assert _run_bounded(worker, 15) < 10
    assert _state(db) == {"evt-0": ("pending", 1, None),
                          **{f"evt-{i}": ("delivered", 1, 204) for i in (1, 2, 3, 4)}}
    assert "the outcome of event 1 attempt 1 cannot be recorded (IntegrityError), dropped" in caplog.text
    assert "database error, retrying" not in caplog.text
    assert worker.delivered == 5  # its attempt was made, and counted


def test_an_unreadable_queue_on_a_scrape_names_the_drivers_reason(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import generate_latest
    from sqlalchemy.exc import OperationalError

    from delivery.metrics import DeliveryMetrics

    def unreadable() -> Any:
        raise OperationalError("SELECT delivery_state FROM webhook_log", {}, Exception("database is locked"))

    metrics = DeliveryMetrics(unreadable, lambda: datetime.now(UTC))
    assert b"tenantctl_delivery_queue_up 0.0" in generate_latest(metrics.registry)
    assert "delivery metrics: queue not readable: OperationalError: database is locked" in caplog.text
    assert "SELECT" not in caplog.text
