"""The retry decision: what is retried, after how long, and when we give up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outbound.retry_after import parse_retry_after
from reconciler.retry import Failure, RetryPolicy, backoff, classify_status, decide

POLICY = RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=8.0, max_retry_after_s=30.0)


@pytest.mark.parametrize(("failure", "idempotent", "attempt", "retry_after", "expected"), [
    (Failure.RATE_LIMITED, False, 1, None, 1.0),      # refused: safe even for a create
    (Failure.RATE_LIMITED, False, 1, 5.0, 5.0),       # Retry-After wins over a shorter backoff
    (Failure.RATE_LIMITED, True, 3, 1.0, 4.0),        # backoff wins over a shorter Retry-After
    (Failure.RATE_LIMITED, True, 1, 31.0, None),      # too long a wait: give up, do not stall the run
    (Failure.UNAVAILABLE, False, 1, None, 1.0),
    (Failure.CONNECT, False, 2, None, 2.0),
    (Failure.SERVER_ERROR, True, 1, None, 1.0),
    (Failure.SERVER_ERROR, False, 1, None, None),     # a create may have happened: leave it to the next plan
    (Failure.LOST, True, 1, None, 1.0),
    (Failure.LOST, False, 1, None, None),
    (Failure.PERMANENT, True, 1, None, None),
    (Failure.RATE_LIMITED, True, 4, None, None),      # attempts exhausted
    (Failure.RATE_LIMITED, True, 10, None, None),
])
def test_decide(failure: Failure, idempotent: bool, attempt: int, retry_after: float | None,
                expected: float | None) -> None:
    # jitter=1.0 gives the ceiling of the backoff, so expectations are exact.
    assert decide(failure, attempt=attempt, idempotent=idempotent, retry_after=retry_after, policy=POLICY,
                  jitter=1.0) == expected


@pytest.mark.parametrize(("attempt", "jitter", "expected"), [
    (1, 0.0, 0.5), (1, 1.0, 1.0), (2, 1.0, 2.0), (4, 1.0, 8.0), (10, 1.0, 8.0), (10, 0.0, 4.0),
])
def test_backoff_grows_is_capped_and_jittered_to_at_least_half(attempt: int, jitter: float,
                                                                 expected: float) -> None:
    assert backoff(attempt, POLICY, jitter) == expected


@pytest.mark.parametrize(("status", "expected"), [
    (200, None), (204, None), (302, None), (400, Failure.PERMANENT), (401, Failure.PERMANENT),
    (404, Failure.PERMANENT), (429, Failure.RATE_LIMITED), (500, Failure.SERVER_ERROR),
    (502, Failure.SERVER_ERROR), (503, Failure.UNAVAILABLE), (504, Failure.SERVER_ERROR),
])
def test_classify_status(status: int, expected: Failure | None) -> None:
    assert classify_status(status) == expected


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("7", 7.0), (" 0 ", 0.0), ("soon", None), ("-3", None),
    ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0), ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_reads_get_more_tries_than_writes() -> None:
    policy = RetryPolicy(max_attempts=3, read_attempts=6, base_delay_s=0.1)
    lost = Failure.LOST
    assert decide(lost, attempt=3, idempotent=True, retry_after=None, policy=policy, jitter=1.0) is None
    assert decide(lost, attempt=3, idempotent=True, retry_after=None, policy=policy, jitter=1.0, read=True)
    assert decide(lost, attempt=6, idempotent=True, retry_after=None, policy=policy, jitter=1.0, read=True) is None
