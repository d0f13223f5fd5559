"""What happens after a failed delivery attempt. Pure: the worker sleeps and writes, this only decides.

Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the delay
after the n-th failed attempt is uniform in [0, min(max_delay, base * 2^(n-1))], so workers retrying the
same outage do not come back in step. A ``Retry-After`` (on 429 and 503, RFC 9110 §10.2.3) is a floor, up to
``max_retry_after``: a platform asking for more (a year, 10^20 seconds) is tried again after it, so one absurd
answer neither dead-letters an event on its first try nor overflows the date arithmetic.
After ``max_attempts`` attempts, or when the next attempt would fall past ``max_age`` from the event's
queueing (its receipt, or its last replay: a replayed dead letter gets the whole budget again), the event is
dead-lettered: kept, counted, shown and replayable, never retried by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 25
    max_age: timedelta = timedelta(days=3)
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    max_retry_after_s: float = 3600.0  # the longest Retry-After honoured


def is_success(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def backoff_s(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Full-jitter delay after the ``attempt``-th failed try (1-based); ``jitter`` is uniform in [0, 1)."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** min(max(0, attempt - 1), 62))
    return float(ceiling * min(max(jitter, 0.0), 1.0))


def next_attempt(*, attempt: int, queued_at: datetime, now: datetime, retry_after_s: float | None,
                 policy: RetryPolicy, jitter: float) -> datetime | None:
    """When to try again after failed attempt number ``attempt``; None to dead-letter. ``queued_at``: where the
    age limit starts (the event's receipt, or its last replay)."""
    if attempt >= policy.max_attempts:
        return None
    delay = backoff_s(attempt, policy, jitter)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    at = now + timedelta(seconds=delay)
    if at - queued_at > policy.max_age:
        return None
    return at

