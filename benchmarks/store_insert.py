"""Webhook-log write throughput: DirectEventStore vs GroupCommitEventStore, 16 request threads.

    .venv/bin/python benchmarks/store_insert.py [--threads 16] [--records 300] [--postgres URL]

Each thread records ``--records`` webhooks (mostly accepted with a fresh event id, some rejected, a few
re-deliveries) and waits for each commit, as a gunicorn thread would. SQLite runs on a temporary file;
PostgreSQL in a throw-away schema (default URL: TENANTCTL_TEST_POSTGRES_URL or the local server).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.engine import make_engine
from store.migrate import upgrade
from store.webhook_log import DirectEventStore, EventStore, GroupCommitEventStore, WebhookRecord

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _record(thread: int, i: int) -> WebhookRecord:
    kind = i % 10
    body = '{"event": "reservation.created", "data": {"id": "%d-%d"}}' % (thread, i)  # noqa: UP031
    if kind == 9:
        return WebhookRecord(
            datetime.now(UTC), "acme", "hospitable", "rejected", 401, "bad_signature", None, {}, len(body)
        )
    event_id = f"evt-{thread}-{i - 1 if kind == 8 else i}"  # kind 8 re-delivers the previous event
    return WebhookRecord(
        datetime.now(UTC),
        "acme",
        "hospitable",
        "accepted",
        200,
        None,
        event_id,
        {"content-type": "application/json"},
        len(body),
        body,
        0.4,
    )


def run(store: EventStore, threads: int, per_thread: int) -> float:
    start = threading.Barrier(threads + 1)

    def work(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            store.record(_record(n, i))

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    return threads * per_thread / (time.perf_counter() - t0)


def bench(label: str, url: str, threads: int, per_thread: int) -> None:
    stores: list[tuple[str, Callable[..., EventStore]]] = [
        ("direct", DirectEventStore),
        ("group", GroupCommitEventStore),
        ("group linger=2ms", lambda e: GroupCommitEventStore(e, linger_s=0.002)),
    ]
    for name, factory in stores:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM webhook_log"))
        store = factory(engine)
        rate = run(store, threads, per_thread)
        batches = getattr(store, "batches_written", None)
        store.close()
        engine.dispose()
        extra = f"  (mean batch {threads * per_thread / batches:.1f})" if batches else ""
        print(f"{label:10} {name:18} {rate:9.0f} records/s{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--records", type=int, default=300, help="per thread")
    parser.add_argument("--postgres", default=os.environ.get("TENANTCTL_TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()
    print(f"{args.threads} threads x {args.records} records, commit awaited per record")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        bench("sqlite", url, args.threads, args.records)

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"postgres   skipped: {type(exc).__name__}")
        return
    try:
        pg = make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
        pg_url = pg.render_as_string(hide_password=False)
        upgrade(pg_url)
        bench("postgres", pg_url, args.threads, args.records)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
