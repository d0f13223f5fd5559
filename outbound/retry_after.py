"""`Retry-After` (RFC 9110 §10.2.3), read the same way by the reconciler's client and the delivery worker."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait: delta-seconds or an HTTP date (relative to NOW, never negative); None when the
    header is absent or unreadable (a date without a zone included)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone takes '²' and other scripts' digits
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
