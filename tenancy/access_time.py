"""Access windows in local time → what Nuki and 2N store. Pure: no I/O, no clock.

Dates and times in a tenant file mean local time in the property's IANA zone (`properties[].timezone`,
else the tenant's `timezone`; UTC when neither is set, which validation allows only without windows).

- A day `valid_from` starts at the first instant of that local day; `valid_until` ends at the last
  second of that local day. Both become UTC instants: Nuki stores `allowedFromDate`/`allowedUntilDate`
  as UTC date-times (spec: SmartlockAuth), 2N's `validFrom`/`validTo` are Unix seconds ("0": unlimited).
- Times of day (`from_time`/`until_time`) are sent as minutes from midnight: the Nuki lock applies them
  in its own zone (spec: SmartlockAuth.allowedFromTime), which must be the property's zone.
- Weekdays are local weekdays: Nuki's bitmask Mon=64 … Sun=1 (spec: SmartlockAuth.allowedWeekDays).

Plans show instants as RFC 9557 labels, `2026-03-29T00:00:00+01:00[Europe/Bratislava]`: local time, its
offset and its zone, so a reviewer reads local time and the instant stays exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tenancy.model import Access, Property, Tenant, Weekday

DEFAULT_ZONE = "UTC"
NUKI_DATE = "%Y-%m-%dT%H:%M:%S.000Z"
UNLIMITED = "0"
DASH = "\u2013"  # en dash, as in a printed timetable

# Spec (Nuki SmartlockAuth.allowedWeekDays): 64 .. monday, 32 .. tuesday, ..., 1 .. sunday.
WEEKDAY_BITS = {Weekday.MON: 64, Weekday.TUE: 32, Weekday.WED: 16, Weekday.THU: 8, Weekday.FRI: 4,
                Weekday.SAT: 2, Weekday.SUN: 1}
_ORDER = list(Weekday)
_SHORT = {d: d.value.capitalize() for d in Weekday}


class TimeZoneError(ValueError):
    """An IANA zone name that this system's zone database does not know."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeZoneError(f"unknown IANA time zone {name!r}") from None


def zone_name(tenant: Tenant, prop: Property | None = None) -> str:
    """The zone a property's windows mean: its own, else the tenant's, else UTC."""
    return (prop.timezone if prop is not None and prop.timezone else None) or tenant.timezone or DEFAULT_ZONE


@dataclass(frozen=True)
class Window:
    """One teammate's access window in local time of `zone` (None: no limit on that side)."""

    zone: str
    weekdays: tuple[Weekday, ...] = tuple(_ORDER)
    from_time: time | None = None
    until_time: time | None = None
    valid_from: date | None = None
    valid_until: date | None = None

    @property
    def every_day(self) -> bool:
        return set(self.weekdays) == set(Weekday)

    @property
    def unlimited(self) -> bool:
        return self.every_day and self.from_time is None and self.valid_from is None and self.valid_until is None


def window_of(access: Access, zone_id: str) -> Window:
    days = tuple(d for d in _ORDER if d in set(access.weekdays))
    return Window(zone_id, days, access.from_time, access.until_time, access.valid_from, access.valid_until)


def declares_window(access: Access | None) -> bool:
    """True when the access limits days, hours or dates: then its meaning depends on a time zone."""
    if access is None:
        return False
    return not window_of(access, DEFAULT_ZONE).unlimited


# Instants --------------------------------------------------------------------------------------------
def day_start(day: date, zone_id: str) -> datetime:
    """The first instant of the local day, in UTC. A midnight skipped by DST starts the day at the gap's end."""
    local = datetime.combine(day, time(0, 0), tzinfo=zone(zone_id))
    # fold=0 in a gap reads the wall time with the earlier offset: an instant just after the gap.
    return local.astimezone(UTC)


def day_end(day: date, zone_id: str) -> datetime:
    """The last whole second of the local day, in UTC (days of 23 or 25 hours included)."""
    return day_start(day + timedelta(days=1), zone_id) - timedelta(seconds=1)


def label(instant: datetime, zone_id: str) -> str:
    """An instant as local time with offset and zone: `2026-03-29T00:00:00+01:00[Europe/Bratislava]`."""
    return f"{instant.astimezone(zone(zone_id)).isoformat(timespec='seconds')}[{zone_id}]"


def parse_label(text: str) -> datetime:
    """`label`'s output (or any ISO date-time with an offset or `Z`) → an aware instant.

    Raises ValueError on text that carries no offset.
    """
    found = datetime.fromisoformat(text.split("[", 1)[0].replace("Z", "+00:00"))
    if found.tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return found


def date_labels(w: Window) -> tuple[str | None, str | None]:
    """The window's first and last instants as labels (None: unlimited)."""
    start = label(day_start(w.valid_from, w.zone), w.zone) if w.valid_from else None
    end = label(day_end(w.valid_until, w.zone), w.zone) if w.valid_until else None
    return start, end


# Nuki ------------------------------------------------------------------------------------------------
def weekday_mask(days: Sequence[Weekday | str]) -> int:
    return sum(WEEKDAY_BITS[Weekday(d)] for d in set(days))


def mask_weekdays(mask: int) -> list[str]:
    return [d.value for d in _ORDER if mask & WEEKDAY_BITS[d]]


def nuki_date(instant_label: str | None) -> str | None:
    """A label → Nuki's `allowedFromDate`/`allowedUntilDate` (UTC, milliseconds, `Z`)."""
    if not instant_label:
        return None
    return parse_label(instant_label).astimezone(UTC).strftime(NUKI_DATE)


def nuki_label(value: object, zone_id: str) -> str | None:
    """Nuki's UTC date-time → a label in the lock's zone (None when unset or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return label(parse_label(value), zone_id)
    except ValueError:
        return value


def minutes(t: time | None) -> int:
    return 0 if t is None else t.hour * 60 + t.minute


# 2N --------------------------------------------------------------------------------------------------
def twon_seconds(instant_label: str | None) -> str:
    """A label → 2N's `validFrom`/`validTo`: Unix seconds as a string, "0" for unlimited."""
    if not instant_label:
        return UNLIMITED
    return str(int(parse_label(instant_label).timestamp()))


def twon_label(value: object, zone_id: str) -> str | None:
    """2N's `validFrom`/`validTo` → a label in the device's zone (None: unlimited)."""
    try:
        seconds = int(str(value or UNLIMITED))
    except ValueError:
        return str(value)
    if seconds <= 0:
        return None
    try:
        return label(datetime.fromtimestamp(seconds, UTC), zone_id)
    except (OverflowError, OSError, ValueError):
        return str(value)  # shown as the device has it; it differs from ours, so it is rewritten


# People ----------------------------------------------------------------------------------------------
def describe(w: Window) -> str:
    """`Mon-Fri 08:00-18:00, 2026-01-01 to 2027-12-31 Europe/Bratislava` (en dashes; or `any time`)."""
    parts: list[str] = []
    if not w.every_day:
        parts.append(_days(w.weekdays))
    if w.from_time is not None and w.until_time is not None:
        parts.append(f"{w.from_time:%H:%M}{DASH}{w.until_time:%H:%M}")
    text = " ".join(parts)
    if w.valid_from or w.valid_until:
        dates = f"{w.valid_from or '…'} to {w.valid_until or '…'}"
        text = f"{text}, {dates}" if text else dates
    if not text:
        return "any time"
    return f"{text} {w.zone}" if w.zone else text


def _days(days: Sequence[Weekday]) -> str:
    idx = sorted(_ORDER.index(d) for d in days)
    runs: list[list[int]] = []
    for i in idx:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(_SHORT[_ORDER[r[0]]] if len(r) == 1 else
                    f"{_SHORT[_ORDER[r[0]]]}{DASH if len(r) > 2 else ','}{_SHORT[_ORDER[r[-1]]]}" for r in runs)


def is_open(w: Window, at: datetime) -> bool:
    """Does the window let its holder in at `at` (aware, any zone; a naive time means local time)?"""
    local = at.replace(tzinfo=zone(w.zone)) if at.tzinfo is None else at.astimezone(zone(w.zone))
    if w.valid_from and local.date() < w.valid_from:
        return False
    if w.valid_until and local.date() > w.valid_until:
        return False
    if _ORDER[local.weekday()] not in w.weekdays:
        return False
    if w.from_time is not None and w.until_time is not None:
        return w.from_time <= local.time().replace(tzinfo=None) < w.until_time
    return True


# Durations -------------------------------------------------------------------------------------------
MAX_TEMPORARY = timedelta(days=30)
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def parse_duration(text: str) -> timedelta:
    """`2h`, `90m`, `1d`, `1h30m` → a timedelta between 1 minute and 30 days; ValueError otherwise."""
    found = _DURATION.match(text.strip().lower())
    if not found or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration like 2h, 90m, 1d or 1h30m")
    days, hours, mins = (int(g or 0) for g in found.groups())
    span = timedelta(days=days, hours=hours, minutes=mins)
    if not timedelta(minutes=1) <= span <= MAX_TEMPORARY:
        raise ValueError(f"{text!r}: a temporary code lasts between 1 minute and 30 days")
    return span


def expired(w: Window, now: datetime) -> bool:
    """Has the window's last local day (`valid_until`) ended at `now` (aware)?"""
    return w.valid_until is not None and now > day_end(w.valid_until, w.zone)
