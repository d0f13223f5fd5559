"""The retry decision: full jitter under an exponential ceiling, Retry-After as a floor, dead-lettering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from delivery.retry import RetryPolicy, backoff_s, next_attempt
from outbound.retry_after import parse_retry_after

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=5, max_age=timedelta(hours=1), base_delay_s=2, max_delay_s=60)


@pytest.mark.parametrize(("attempt", "jitter", "expected"), [
    (1, 1.0, 2.0), (2, 1.0, 4.0), (3, 0.5, 4.0), (6, 1.0, 60.0), (40, 1.0, 60.0), (3, 0.0, 0.0),
])
def test_backoff_is_full_jitter_under_a_capped_exponential_ceiling(attempt: int, jitter: float,
                                                                   expected: float) -> None:
    assert backoff_s(attempt, POLICY, jitter) == expected


def test_retry_after_is_a_floor() -> None:
    at = next_attempt(attempt=1, queued_at=T0, now=T0, retry_after_s=30, policy=POLICY, jitter=0.1)
    assert at == T0 + timedelta(seconds=30)


@pytest.mark.parametrize(("attempt", "queued_at", "retry_after"), [
    (5, T0, None),  # the attempt limit
    (1, T0 - timedelta(minutes=59, seconds=59), 5),  # the next try would be past the age limit
])
def test_dead_letter_at_the_limits(attempt: int, queued_at: datetime, retry_after: float | None) -> None:
    assert next_attempt(attempt=attempt, queued_at=queued_at, now=T0, retry_after_s=retry_after,
                        policy=POLICY, jitter=0.5) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), ("Tue, 01 Dec 2026 12:00:30 GMT", 30.0), ("soon", None), (None, None),
    ("Tue, 01 Dec 2026 11:00:00 GMT", 0.0),
])
def test_retry_after_as_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, T0) == expected
