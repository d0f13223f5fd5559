"""The webhook write path: record, de-duplicate, group commit, and fail loudly when the database does."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from store.engine import begin_write, make_engine
from store.errors import DatabaseUnavailable
from store.schema import webhook_log
from store.webhook_log import (
    DirectEventStore,
    EventStore,
    GroupCommitEventStore,
    RecordResult,
    WebhookRecord,
    query_log,
    write_batch,
)
from tests.store.helpers import T0, rec

StoreFactory = Callable[[Engine], EventStore]
STORES: dict[str, StoreFactory] = {"direct": DirectEventStore, "group": GroupCommitEventStore}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, engine: Engine) -> Iterator[EventStore]:
    s = STORES[request.param](engine)
    yield s
    s.close()


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    c = webhook_log.c
    stmt = select(c.tenant, c.provider, c.outcome, c.event_id, c.body).order_by(c.id)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(stmt)]


def test_an_accepted_event_is_stored_with_every_field(store: EventStore, engine: Engine) -> None:
    record = rec(headers={"x-hospitable-signature": "(redacted by caller)"}, latency_ms=2.25)
    assert store.record(record) is RecordResult.STORED
    rows, _ = query_log(engine)
    assert len(rows) == 1
    stored = rows[0]
    fields = {f.name for f in dataclasses.fields(WebhookRecord)}
    assert WebhookRecord(**{k: v for k, v in vars(stored).items() if k in fields}) == record
    assert (stored.delivery_state, stored.attempts) == ("pending", 0)  # queued by the same insert
    assert stored.received_at.tzinfo is not None


def test_the_same_event_twice_is_one_accepted_row_and_one_duplicate_without_body(
    store: EventStore, engine: Engine
) -> None:
    assert store.record(rec()) is RecordResult.STORED
    assert store.record(rec()) is RecordResult.DUPLICATE
    assert _rows(engine) == [
        ("acme", "hospitable", "accepted", "evt-1", '{"id": "evt-1"}'),
        ("acme", "hospitable", "duplicate", "evt-1", None),
    ]


def wa(event_id: str, *keys: str, tenant: str = "acme") -> WebhookRecord:
    return rec(provider="whatsapp", event_id=event_id, item_keys=tuple(keys), tenant=tenant)


def test_a_whatsapp_item_is_stored_once_whatever_batch_it_arrives_in(store: EventStore, engine: Engine) -> None:
    assert store.record(wa("msg:A", "msg:A")) is RecordResult.STORED
    # Redelivered inside a batch with a status already seen too: nothing new, a duplicate.
    assert store.record(wa("batch:1", "msg:A")) is RecordResult.DUPLICATE
    assert store.record(wa("batch:2", "msg:A", "status:A:read")) is RecordResult.STORED  # one new item
    assert store.record(wa("batch:3", "status:A:read", "msg:A")) is RecordResult.DUPLICATE
    assert store.record(wa("batch:4", "msg:A", tenant="other")) is RecordResult.STORED  # keys are per tenant
    outcomes = [r[2] for r in _rows(engine)]
    assert outcomes == ["accepted", "duplicate", "accepted", "duplicate", "accepted"]


def test_items_repeated_inside_one_batch_belong_to_their_first_delivery(engine: Engine) -> None:
    with begin_write(engine) as conn:
        results = write_batch(conn, [wa("batch:1", "msg:A", "msg:B"), wa("batch:2", "msg:B", "msg:A"),
                                     wa("batch:3", "msg:B", "msg:C")])
    assert results == [RecordResult.STORED, RecordResult.DUPLICATE, RecordResult.STORED]


def test_pruning_forgets_item_keys_with_their_log_rows(store: EventStore, engine: Engine) -> None:
    from datetime import timedelta

    from store.webhook_log import prune

    assert store.record(wa("msg:A", "msg:A")) is RecordResult.STORED
    assert prune(engine, T0 + timedelta(seconds=1), include_undelivered=True) == 1
    assert store.record(wa("msg:A", "msg:A")) is RecordResult.STORED


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({}, {"tenant": "other"}),  # another tenant's event may reuse the id
        ({}, {"provider": "whatsapp"}),  # so may another provider's
        ({"outcome": "rejected", "status_code": 401, "body": None}, {}),  # a rejected try is no delivery
        ({"event_id": None}, {"event_id": None}),  # no id: nothing to de-duplicate by
    ],
)
def test_what_is_not_a_duplicate(
    store: EventStore, engine: Engine, first: dict[str, object], second: dict[str, object]
) -> None:
    assert store.record(rec(**first)) is RecordResult.STORED
    assert store.record(rec(**second)) is RecordResult.STORED


def test_rejected_and_unknown_tenant_requests_are_logged(store: EventStore, engine: Engine) -> None:
    store.record(rec(outcome="rejected", status_code=401, reason="bad_signature", body=None))
    store.record(rec(tenant=None, outcome="rejected", status_code=404, reason="unknown_tenant", body=None))
    assert [(r.tenant, r.reason, r.status_code) for r in query_log(engine)[0]] == [
        (None, "unknown_tenant", 404),
        ("acme", "bad_signature", 401),
    ]


BatchWriter = Callable[[list[WebhookRecord]], list[RecordResult]]


@pytest.fixture(params=["transaction", "group-commit writer"])
def write(request: pytest.FixtureRequest, engine: Engine) -> Iterator[BatchWriter]:
    """One batch, written either by ``write_batch`` inside a caller's transaction or the way the
    group-commit writer commits what it dequeued (on PostgreSQL: one statement, no transaction)."""
    if request.param == "transaction":
        def in_transaction(batch: list[WebhookRecord]) -> list[RecordResult]:
            with begin_write(engine) as conn:
                return write_batch(conn, batch)

        yield in_transaction
    else:
        store = GroupCommitEventStore(engine)
        yield store._commit  # the writer's own step, called without its queue and thread
        store.close()


def test_duplicates_within_one_batch_keep_the_first_and_log_the_rest(engine: Engine, write: BatchWriter) -> None:
    batch = [
        rec(event_id="a"),
        rec(event_id="b"),
        rec(event_id="a", latency_ms=9.0),
        rec(event_id="a", outcome="rejected", status_code=401, body=None),
        rec(event_id="b", tenant="other"),
    ]
    results = write(batch)
    assert results == [
        RecordResult.STORED,
        RecordResult.STORED,
        RecordResult.DUPLICATE,
        RecordResult.STORED,
        RecordResult.STORED,
    ]
    rows = sorted(_rows(engine), key=lambda r: (str(r[0]), str(r[3]), str(r[2])))
    assert [(r[0], r[3], r[2], r[4] is not None) for r in rows] == [
        ("acme", "a", "accepted", True),
        ("acme", "a", "duplicate", False),
        ("acme", "a", "rejected", False),
        ("acme", "b", "accepted", True),
        ("other", "b", "accepted", True),
    ]


def test_every_field_of_a_batch_comes_back_as_written(engine: Engine, write: BatchWriter) -> None:
    """Text that array and JSON quoting must survive, absent values, and batches of any size."""
    odd = 'x","y"} {\\"z\\", NULL, \'é\' ✓ ,{}'
    first = rec(event_id="p-1", headers={"user-agent": odd, "x-request-id": "{1,2}"}, body=odd, body_size=40,
                latency_ms=None)
    refused = rec(event_id=None, tenant=None, outcome="rejected", status_code=404, reason="unknown-tenant:x",
                  headers=None, body=None, body_size=0, latency_ms=2.25)
    for size in (1, 2, 7):
        write([dataclasses.replace(first, event_id=f"p-{size}-{i}") for i in range(size - 1)] + [refused])
    assert write([first, refused]) == [RecordResult.STORED, RecordResult.STORED]
    rows, _ = query_log(engine, limit=100)
    stored = next(r for r in rows if r.event_id == "p-1")
    assert (stored.headers, stored.body, stored.body_size, stored.latency_ms) == (first.headers, odd, 40, None)
    assert stored.received_at == T0 and stored.delivery_state == "pending"
    gone = [r for r in rows if r.outcome == "rejected"]
    assert len(gone) == 4 and all(
        (r.tenant, r.reason, r.headers, r.body, r.latency_ms, r.delivery_state) ==
        (None, "unknown-tenant:x", None, None, 2.25, None) for r in gone)
    assert len([r for r in rows if r.outcome == "accepted"]) == 1 + 0 + 1 + 6


def test_a_batch_mixing_new_and_already_accepted_events(engine: Engine, write: BatchWriter) -> None:
    write([rec(event_id="old")])
    results = write([rec(event_id="new"), rec(event_id="old"), rec(event_id="new")])
    assert results == [RecordResult.STORED, RecordResult.DUPLICATE, RecordResult.DUPLICATE]
    with engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(select(webhook_log.c.outcome, func.count()).group_by(webhook_log.c.outcome)).all()
        )
    assert counts == {"accepted": 2, "duplicate": 2}


def test_group_commit_stores_every_record_once_and_returns_only_after_commit(engine: Engine) -> None:
    threads, per_thread = 8, 200
    checker = make_engine(str(engine.url.render_as_string(hide_password=False)))
    store = GroupCommitEventStore(engine)
    missing: list[str] = []
    results: list[RecordResult] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(per_thread):
            event_id = f"t{n}-{i}"
            result = store.record(rec(event_id=event_id, body=None))
            # Visible from another connection the moment record() returns: it was committed.
            with checker.connect() as conn:
                seen = conn.execute(
                    select(func.count()).where(webhook_log.c.event_id == event_id)
                ).scalar_one()
            with lock:
                results.append(result)
                if seen != 1:
                    missing.append(event_id)

    try:
        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        store.close()
        checker.dispose()
    assert missing == []
    assert results == [RecordResult.STORED] * threads * per_thread
    with engine.connect() as conn:
        total, distinct = conn.execute(
            select(func.count(), func.count(webhook_log.c.event_id.distinct()))
        ).one()
    assert (total, distinct) == (threads * per_thread, threads * per_thread)
    assert store.batches_written < threads * per_thread  # requests did share commits


def test_concurrent_deliveries_of_one_event_yield_exactly_one_accepted(engine: Engine) -> None:
    store = GroupCommitEventStore(engine)
    results: list[RecordResult] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        results.append(store.record(rec(event_id="same")))

    pool = [threading.Thread(target=deliver) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    assert sorted(results) == sorted([RecordResult.STORED] + [RecordResult.DUPLICATE] * 7)


def _bad_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}"  # a directory: SQLite cannot open it
    return "postgresql+psycopg://postgres:pw@127.0.0.1:1/test"  # nothing listens on port 1


@pytest.mark.parametrize("kind", sorted(STORES))
def test_an_unreachable_database_raises_unavailable(backend: str, tmp_path: Path, kind: str) -> None:
    engine = make_engine(_bad_url(backend, tmp_path))
    store = STORES[kind](engine)
    try:
        with pytest.raises(DatabaseUnavailable, match="could not record the webhook") as info:
            store.record(rec(body="guest-secret-body"))
    finally:
        store.close()
        engine.dispose()
    assert "guest-secret-body" not in str(info.value)
    assert "pw" not in str(info.value).split(":")  # no password either


@pytest.mark.parametrize("kind", sorted(STORES))
def test_losing_the_table_fails_the_request_and_the_store_recovers(engine: Engine, kind: str) -> None:
    store = STORES[kind](engine)
    try:
        assert store.record(rec(event_id="before")) is RecordResult.STORED
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_log RENAME TO webhook_log_away"))
        with pytest.raises(DatabaseUnavailable):
            store.record(rec(event_id="during", body="guest-secret-body"))
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE webhook_log_away RENAME TO webhook_log"))
        assert store.record(rec(event_id="after")) is RecordResult.STORED
    finally:
        store.close()
    assert [r[3] for r in _rows(engine)] == ["before", "after"]


def test_a_locked_sqlite_database_raises_unavailable_after_the_busy_timeout(tmp_path: Path) -> None:
    import sqlite3

    from store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/t.db"
    upgrade(url)
    engine = make_engine(url, busy_timeout_ms=50)
    store = GroupCommitEventStore(engine, retry_pause_s=0.01)
    # Another program (not a tenantctl writer) holds SQLite's write lock.
    blocker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable, match="locked"):
            store.record(rec())
        blocker.execute("ROLLBACK")
        assert store.record(rec()) is RecordResult.STORED
    finally:
        store.close()
        engine.dispose()
        blocker.close()


def test_one_bad_record_does_not_fail_its_batch_neighbours(engine: Engine) -> None:
    store = GroupCommitEventStore(engine)
    good = [rec(event_id=f"ok-{i}") for i in range(3)]
    bad = rec(event_id="bad", outcome="weird")  # violates the CHECK constraint
    # Queue all four before the writer starts so they form one batch.
    waiters = []
    from store.webhook_log import _Pending

    for r in [good[0], bad, *good[1:]]:
        p = _Pending(r)
        store._queue.put(p)
        waiters.append(p)
    store.start()
    outcomes: list[RecordResult | str] = []
    for w in waiters:
        try:
            outcomes.append(w.wait(10))
        except DatabaseUnavailable:
            outcomes.append("unavailable")
    store.close()
    assert outcomes == [RecordResult.STORED, "unavailable", RecordResult.STORED, RecordResult.STORED]


def test_a_tenantctl_writer_holding_the_file_makes_callers_time_out_not_hang(tmp_path: Path) -> None:
    from store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/t.db"
    upgrade(url)
    holder, engine = make_engine(url), make_engine(url)
    store = GroupCommitEventStore(engine, timeout_s=0.3)
    try:
        with begin_write(holder), pytest.raises(DatabaseUnavailable, match="did not commit"):
            store.record(rec(event_id="waits"))
        # Once the other writer is done, the queued record commits; its retry is a duplicate, not lost.
        assert store.record(rec(event_id="waits")) is RecordResult.DUPLICATE
    finally:
        store.close()
        engine.dispose()
        holder.dispose()


def test_close_drains_the_queue_and_later_records_are_refused(engine: Engine) -> None:
    store = GroupCommitEventStore(engine)
    from store.webhook_log import _Pending

    pending = [_Pending(rec(event_id=f"q{i}")) for i in range(600)]  # more than a batch
    for p in pending:
        store._queue.put(p)
    store.start()
    store.close()
    assert all(p.wait(0) is RecordResult.STORED for p in pending)
    with pytest.raises(DatabaseUnavailable, match="closed"):
        store.record(rec(event_id="late"))


def test_naive_timestamps_are_refused(store: EventStore) -> None:
    with pytest.raises(DatabaseUnavailable):
        store.record(rec(received_at=T0.replace(tzinfo=None)))


def test_a_forked_worker_gets_its_own_writer(tmp_path: Path) -> None:
    import multiprocessing

    from store.migrate import upgrade

    url = f"sqlite:///{tmp_path}/t.db"
    upgrade(url)
    engine = make_engine(url)
    store = GroupCommitEventStore(engine)
    assert store.record(rec(event_id="parent")) is RecordResult.STORED  # writer thread running

    def child() -> None:
        # The parent's writer thread does not exist here: record() must start a new one.
        raise SystemExit(0 if store.record(rec(event_id="child")) is RecordResult.STORED else 1)

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(30)
    store.close()
    assert proc.exitcode == 0
    assert [r.event_id for r in query_log(engine)[0]] == ["child", "parent"]
    engine.dispose()
