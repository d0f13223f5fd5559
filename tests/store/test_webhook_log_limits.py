"""The write path's bounds: storable text, a queue that answers at once when full, refusals folded into
counted rows. (The stuck-database deadline is proven through the real server:
tests/webhook_server/test_stuck_database.py.)"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from store.engine import make_engine
from store.errors import DatabaseUnavailable
from store.migrate import upgrade
from store.refusals import RefusalFolder
from store.schema import webhook_log
from store.webhook_log import GroupCommitEventStore, RecordResult, query_log, stats
from tenancy.escape import storable_key
from tests.store.helpers import T0, rec


def _refusal(i: int, reason: str = "bad-signature", minute: int = 0) -> object:
    return rec(outcome="rejected", status_code=401, reason=reason, event_id=None, body=None,
               received_at=T0 + timedelta(minutes=minute, seconds=i % 50))


def test_poison_text_is_stored_escaped_its_key_by_digest_and_deduplicated(engine: Engine) -> None:
    with GroupCommitEventStore(engine) as store:
        poison = rec(event_id="evt-\ud800\x00", headers={"user-agent": "ua\x00\udfff"})
        assert store.record(poison) is RecordResult.STORED
        assert store.record(poison) is RecordResult.DUPLICATE
        assert store.record(rec(event_id="evt-\\ud800\\x00")) is RecordResult.STORED  # its escape: another event
    rows, _ = query_log(engine)
    key = storable_key("evt-\ud800\x00", 255)
    assert [(r.outcome, r.event_id) for r in rows] == [("accepted", "evt-\\ud800\\x00"), ("duplicate", key),
                                                        ("accepted", key)]
    assert rows[2].headers == {"user-agent": "ua\\x00\\udfff"}


def test_the_folder_keeps_a_sample_and_counts_the_rest_per_kind_and_minute() -> None:
    folder = RefusalFolder(sample=3)
    admitted = [folder.admit(_refusal(i)) for i in range(10)]  # type: ignore[arg-type]
    assert admitted == [True] * 3 + [False] * 7
    assert folder.admit(_refusal(0, reason="unknown-tenant:x"))  # type: ignore[arg-type]  # another kind
    assert folder.due(T0 + timedelta(seconds=59)) == []  # the minute is not over
    [row] = folder.due(T0 + timedelta(minutes=1))
    assert (row.repeats, row.reason, row.event_id) == (6, "bad-signature", None)  # 7 refusals in one row
    assert folder.admit(_refusal(0, minute=1))  # a new minute starts a new sample  # type: ignore[arg-type]


def test_folded_refusals_are_written_on_close_and_counted_by_stats(engine: Engine) -> None:
    with GroupCommitEventStore(engine, refusal_sample=2) as store:
        for i in range(50):
            assert store.record(_refusal(i)) is RecordResult.STORED  # type: ignore[arg-type]
    with engine.connect() as conn:
        assert len(conn.execute(select(webhook_log.c.id)).all()) == 3
    [s] = stats(engine, now=T0 + timedelta(minutes=1))
    assert s.rejected == 50


def test_a_full_queue_answers_at_once(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=3000)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the writer blocks on its first batch
    store = GroupCommitEventStore(engine, max_queue=1, timeout_s=10)
    waiting = [threading.Thread(target=lambda i=i: _swallow(store, i)) for i in range(2)]
    try:
        waiting[0].start()
        time.sleep(0.3)  # taken by the writer, which now waits for the lock
        waiting[1].start()
        time.sleep(0.3)  # queued behind it: the queue is full
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="records waiting"):
            store.record(rec(event_id="one-too-many"))
        assert time.monotonic() - started < 0.5
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        for t in waiting:
            t.join(10)
        store.close()
        engine.dispose()


def _swallow(store: GroupCommitEventStore, i: int) -> None:
    with contextlib.suppress(DatabaseUnavailable):
        store.record(rec(event_id=f"waiting-{i}"))
