"""The filters of the webhook log's views, read from a query string: `GET /admin/webhook-logs` (JSON) and the
Webhook Logs page (`/admin/logs`) accept the same names with the same rules.

Every value is checked before it meets the database, and a bad one is named in an error, never passed on: a
misspelt filter answered with the unfiltered log reads as if it had matched, and a NUL, which PostgreSQL
refuses in text, would read as a database outage (503) rather than as the caller's mistake (400).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from store.schema import DELIVERY_STATES, OUTCOMES
from tenancy.model import is_slug
from webhook_server.routing import URL_PROVIDERS

PROVIDERS = tuple(dict.fromkeys(URL_PROVIDERS.values()))  # as the log names them
MAX_CURSOR = 2**63 - 1  # log ids are BIGINT
MAX_REASON_CHARS = 64  # the reason column's length
@dataclass(frozen=True)
class LogFilters:
    tenant: str | None = None
    provider: str | None = None
    outcome: str | None = None
    states: tuple[str, ...] = ()
    reason: str | None = None  # a prefix of the refusal's reason
    since: datetime | None = None  # inclusive, UTC
    until: datetime | None = None  # exclusive, UTC
    cursor: int | None = None  # the last id shown
    limit: int | None = None


def _time(name: str, raw: str, errors: list[str]) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        errors.append(f"{name}: use a date and time like 2026-12-01T08:00 (ISO 8601)")
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        return value.astimezone(UTC)  # 0001-01-01T00:00+23:59 is before the first representable UTC time
    except OverflowError:
        errors.append(f"{name}: out of range (years 0001-9999 in UTC)")
        return None


def _whole(name: str, raw: str, low: int, high: int, errors: list[str]) -> int | None:
    if raw.isascii() and raw.isdigit() and low <= int(raw) <= high:
        return int(raw)
    errors.append(f"{name}: a whole number from {low} to {high}")
    return None


def parse(params: Mapping[str, str | Sequence[str]], accepted: Sequence[str], max_limit: int = 1000
          ) -> tuple[LogFilters, list[str]]:
    """The filters of ``params`` (a query string's, a name to its value or values) among the names ``accepted``,
    and the errors, one line each naming the parameter; a filter in error is left out. ``state`` may be given
    several times (any of them); any other name once. Empty values mean "not filtered"."""
    errors: list[str] = []
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        named = ", ".join(repr(k[:40]) for k in unknown)
        errors.append(f"unknown parameter {named}: the parameters are {', '.join(sorted(accepted))}")
    values: dict[str, list[str]] = {}
    for name in accepted:
        given = params.get(name)
        listed = [given] if isinstance(given, str) else list(given or [])
        values[name] = [v.strip() for v in listed if v.strip()]
        if len(values[name]) > 1 and name != "state":
            errors.append(f"{name}: given more than once")
            values[name] = []

    def one(name: str) -> str | None:
        return values[name][0] if values.get(name) else None

    tenant, provider, outcome, reason = one("tenant"), one("provider"), one("outcome"), one("reason")
    if tenant is not None and not is_slug(tenant):
        errors.append("tenant: a tenant's slug (lower-case letters, digits and -)")
        tenant = None
    if provider is not None and provider not in PROVIDERS:
        errors.append(f"provider: one of {', '.join(PROVIDERS)}")
        provider = None
    if outcome is not None and outcome not in OUTCOMES:
        errors.append(f"outcome: one of {', '.join(OUTCOMES)}")
        outcome = None
    states = tuple(values.get("state", ()))
    if any(s not in DELIVERY_STATES for s in states):
        errors.append(f"state: one of {', '.join(DELIVERY_STATES)} (a delivery state)")
        states = ()
    if reason is not None and (len(reason) > MAX_REASON_CHARS or not reason.isprintable()):
        errors.append(f"reason: the start of a reason (printable text, at most {MAX_REASON_CHARS} characters)")
        reason = None
    since = _time("since", raw, errors) if (raw := one("since")) is not None else None
    until = _time("until", raw, errors) if (raw := one("until")) is not None else None
    if since is not None and until is not None and until <= since:
        errors.append("until: must be after since (since is inclusive, until exclusive)")
        since = until = None
    cursor = _whole("cursor", raw, 1, MAX_CURSOR, errors) if (raw := one("cursor")) is not None else None
    limit = _whole("limit", raw, 1, max_limit, errors) if (raw := one("limit")) is not None else None
    return LogFilters(tenant, provider, outcome, states, reason, since, until, cursor, limit), errors


__all__ = ["MAX_CURSOR", "PROVIDERS", "LogFilters", "is_slug", "parse"]
