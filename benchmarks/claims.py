"""Time of a delivery worker's database round (record 64 outcomes, claim 64 more) against a large queue.

    .venv/bin/python benchmarks/claims.py [--database sqlite|postgres|both] [--stuck 100000] [--due 20000]
        [--rounds 100]

One throw-away database per engine (SQLite under a temporary directory; PostgreSQL in a throw-away schema of
the local test server), migrated by the code under test, filled with accepted events, unanalyzed (as a burst
leaves the statistics):
  - ``--stuck`` pending events of a provider the worker does not deliver (no destination: they stay pending),
    the oldest of the queue;
  - ``--due`` due events of the provider it delivers.
Then ``--rounds`` rounds of ``store.delivery.cycle`` through ``worker_engine``, each recording the previous
round's 64 events as delivered and claiming 64 more; printed: the median and p90 of a round, in ms.
For a before/after comparison, copy this file into another checkout (`git archive <commit> | tar -x -C DIR`)
and run it there: it measures the code of the checkout it sits in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import webhooks as wh  # noqa: E402  # the benchmarks' throw-away databases

from store.delivery import Claimed, Finished, cycle, worker_engine  # noqa: E402
from store.webhook_log import WebhookRecord, write_batch  # noqa: E402

CLAIM = 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--stuck", type=int, default=100_000, help="pending events of an undelivered provider")
    ap.add_argument("--due", type=int, default=20_000, help="due events of the delivered provider")
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args()
    if args.due < CLAIM * (args.rounds + 1):
        raise SystemExit(f"--due must be at least {CLAIM * (args.rounds + 1)} for {args.rounds} full rounds")
    kinds = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    with tempfile.TemporaryDirectory(prefix="tenantctl-claims-") as work:
        for kind in kinds:
            with wh.bench_database(kind, Path(work)) as url:
                median, p90 = measure(url, args.stuck, args.due, args.rounds)
            print(f"{kind}: {args.stuck:,} pending events of an undelivered provider, {args.due:,} due of the "
                  f"delivered one: a round of {CLAIM} median {median:.1f} ms, p90 {p90:.1f} ms "
                  f"({args.rounds} rounds; code of {ROOT})", flush=True)


def measure(url: str, stuck: int, due: int, rounds: int) -> tuple[float, float]:
    engine = worker_engine(url)
    try:
        start = datetime.now(UTC) - timedelta(hours=1)
        # The undelivered provider's events first, so they are the oldest and the head of any index by due time.
        for provider, count, offset in (("nuki", stuck, 0), ("hospitable", due, stuck)):
            for first in range(0, count, 2000):
                with engine.begin() as conn:
                    write_batch(conn, [WebhookRecord(
                        received_at=start + timedelta(milliseconds=offset + i), tenant="bench", provider=provider,
                        outcome="accepted", status_code=200, event_id=f"{provider}-{i}", body="{}", body_size=2)
                        for i in range(first, min(first + 2000, count))])
        claimed: list[Claimed] = []
        took: list[float] = []
        for n in range(rounds + 1):
            now = datetime.now(UTC)
            done = [Finished(item, now, "bench", "delivered", 204, 5.0, None, "delivered", None, now)
                    for item in claimed]
            began = time.perf_counter()
            claimed = cycle(engine, done, claim=f"bench:{n}", now=now, lease=timedelta(seconds=40), limit=CLAIM,
                            providers=("hospitable",))
            if n:  # the first round only claims
                took.append((time.perf_counter() - began) * 1000)
            if len(claimed) != CLAIM or any(item.provider != "hospitable" for item in claimed):
                raise SystemExit(f"round {n} claimed {len(claimed)} events, not {CLAIM} of the delivered provider")
        took.sort()
        return statistics.median(took), took[int(0.9 * (len(took) - 1))]
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
