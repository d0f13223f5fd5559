"""Finding the dead letters in a large log: `webhooks log --state dead` (query_log), the log page's "dead" filter and
`webhooks replay --dead --dry-run`, against a scan of the log for the same rows, side by side on one database.

    .venv/bin/python benchmarks/dead_letters.py [--rows 500000] [--dead 10] [--repeat 5] [--postgres URL]

A log of ROWS delivered events and DEAD dead-lettered ones spread through it, on SQLite (no statistics, as a log
left to grow has none) and PostgreSQL (after ANALYZE). Each read is timed REPEAT times; the median is shown. The
baseline is query_log's statement as it was before the queue's index served it (the same columns, filtered by
`delivery_state IN ('dead')`, newest first): SQLite scanned the log for it; PostgreSQL found the index itself.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402  # the benchmarks' throw-away databases

from store.delivery import replay  # noqa: E402
from store.engine import make_engine  # noqa: E402
from store.health import log_page  # noqa: E402
from store.schema import webhook_log  # noqa: E402
from store.webhook_log import _LOG_COLUMNS, _row_to_log, query_log  # noqa: E402

DEFAULT_PG = os.environ.get("TENANTCTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fill(engine: Engine, rows: int, dead: int) -> None:
    now = datetime.now(UTC)
    every = max(1, rows // max(dead, 1))
    batch: list[dict[str, object]] = []
    with engine.begin() as conn:
        for i in range(rows):
            batch.append({"received_at": now - timedelta(seconds=rows - i), "provider": "hospitable",
                          "tenant": f"t{i % 100}", "outcome": "accepted", "status_code": 200, "event_id": f"e{i}",
                          "body_size": 2, "delivery_state": "dead" if i % every == every // 2 else "delivered",
                          "attempts": 1})
            if len(batch) == 20_000:
                conn.execute(webhook_log.insert(), batch)
                batch = []
        if batch:
            conn.execute(webhook_log.insert(), batch)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE webhook_log"))


def timed(read: Callable[[], object], repeat: int) -> float:
    read()  # warm: the first read pays for the cache, not for the plan
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


def measure(name: str, engine: Engine, repeat: int) -> None:
    before = select(*_LOG_COLUMNS).where(webhook_log.c.delivery_state.in_(["dead"])).order_by(
        webhook_log.c.id.desc()).limit(101)

    def scan() -> object:  # with the same conversion to rows as query_log's
        with engine.connect() as conn:
            return [_row_to_log(r) for r in conn.execute(before)]

    now = datetime.now(UTC)
    reads = {
        "webhooks log --state dead": lambda: query_log(engine, states=["dead"], limit=100),
        "log page, state=dead": lambda: log_page(engine, states=["dead"]),
        "replay --dead --dry-run": lambda: replay(engine, now=now, dead_only=True, dry_run=True),
    }
    base = timed(scan, repeat)
    print(f"{name}: {'the statement before':<27} {base:8.1f} ms")
    for what, read in reads.items():
        ms = timed(read, repeat)
        print(f"{name}: {what:<27} {ms:8.1f} ms  ({base / ms:5.1f}x the speed of the one before)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--dead", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--postgres", default=DEFAULT_PG)
    args = ap.parse_args()
    for kind in ("sqlite", "postgres"):  # a migrated database each, thrown away after (webhooks.bench_database)
        with tempfile.TemporaryDirectory(prefix="tenantctl-dead-") as work, \
                wh.bench_database(kind, Path(work), args.postgres) as url:
            engine = make_engine(url)
            fill(engine, args.rows, args.dead)
            measure(f"{kind} ({args.rows:,} rows, {args.dead} dead)", engine, args.repeat)
            engine.dispose()

if __name__ == "__main__":
    main()
