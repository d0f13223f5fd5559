"""When to try a request again, and after how long. Pure: the HTTP client sleeps, this only decides.

A failure is retried only when trying again cannot do harm:
- RATE_LIMITED (429, Meta's rate-limit codes), UNAVAILABLE (503) and CONNECT (never reached the server)
  mean the provider did nothing: always safe.
- SERVER_ERROR (other 5xx) and LOST (sent, no answer: read timeout, reset) may have been applied: retried
  only for idempotent requests (reads, DELETE, and writes the provider declares idempotent). A lost
  create is left to the next plan, which sees it and converges instead of creating it twice.
Delays grow exponentially with jitter (so many clients do not retry in step) and never undercut a
provider's Retry-After; a Retry-After beyond `max_retry_after_s` gives up rather than stall a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Failure(StrEnum):
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    CONNECT = "connect"
    SERVER_ERROR = "server_error"
    LOST = "lost"
    DEADLINE = "deadline"  # the answer did not arrive whole within the call's total deadline: not retried
    PERMANENT = "permanent"


ALWAYS_SAFE = frozenset({Failure.RATE_LIMITED, Failure.UNAVAILABLE, Failure.CONNECT})
SAFE_IF_IDEMPOTENT = frozenset({Failure.SERVER_ERROR, Failure.LOST})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # including the first
    # Reads are harmless to repeat, and a read that gives up hides a provider from the whole run (or
    # leaves a write's outcome unknown): they get more tries. None: as many as `max_attempts`.
    read_attempts: int | None = 8
    base_delay_s: float = 0.25
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0


def backoff(attempt: int, policy: RetryPolicy, jitter: float) -> float:
    """Delay after the `attempt`-th failed try (1-based): base·2^(attempt-1), capped, jittered to 50-100 %."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** max(0, attempt - 1))
    return float(ceiling * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0)))


def decide(failure: Failure, *, attempt: int, idempotent: bool, retry_after: float | None,
           policy: RetryPolicy, jitter: float, read: bool = False) -> float | None:
    """Seconds to wait before the next try, or None to give up. `attempt` counts tries made so far;
    `read`: a request that changes nothing (GET), allowed `policy.read_attempts`."""
    limit = policy.read_attempts if read and policy.read_attempts is not None else policy.max_attempts
    if attempt >= limit:
        return None
    if failure not in ALWAYS_SAFE and not (idempotent and failure in SAFE_IF_IDEMPOTENT):
        return None
    if retry_after is not None and retry_after > policy.max_retry_after_s:
        return None
    delay = backoff(attempt, policy, jitter)
    return max(delay, retry_after) if retry_after is not None else delay


def classify_status(status: int) -> Failure | None:
    """The failure an HTTP status means; None for success (and redirects, which the client refuses)."""
    if status < 400:
        return None
    if status == 429:
        return Failure.RATE_LIMITED
    if status == 503:
        return Failure.UNAVAILABLE
    if status >= 500:
        return Failure.SERVER_ERROR
    return Failure.PERMANENT

