"""Access windows mean local time: what Nuki and 2N get, across both DST changes and west of UTC."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from reconciler.providers.nuki import auth_body, code_attrs, live_code_attrs
from reconciler.providers.twon import live_user_attrs, user_body
from tenancy.access_time import (
    date_labels,
    describe,
    is_open,
    minutes,
    nuki_date,
    parse_duration,
    twon_seconds,
    weekday_mask,
    window_of,
)
from tenancy.model import Access

BA = "Europe/Bratislava"
NY = "America/New_York"

# zone, valid_from, valid_until → Nuki allowedFromDate, allowedUntilDate, 2N validFrom, validTo
CASES = [
    # Spring forward in Bratislava (02:00 CET → 03:00 CEST): a 23-hour day.
    (BA, date(2026, 3, 29), date(2026, 3, 29),
     "2026-03-28T23:00:00.000Z", "2026-03-29T21:59:59.000Z", "1774738800", "1774821599"),
    # Fall back in Bratislava (03:00 CEST → 02:00 CET): a 25-hour day.
    (BA, date(2026, 10, 25), date(2026, 10, 25),
     "2026-10-24T22:00:00.000Z", "2026-10-25T22:59:59.000Z", "1792879200", "1792969199"),
    # West of UTC: the last local day ends on the next UTC day.
    (NY, date(2026, 7, 1), date(2026, 12, 31),
     "2026-07-01T04:00:00.000Z", "2027-01-01T04:59:59.000Z", "1782878400", "1798779599"),
    # UTC itself: midnight to the last second.
    ("UTC", date(2026, 1, 1), date(2026, 12, 31),
     "2026-01-01T00:00:00.000Z", "2026-12-31T23:59:59.000Z", "1767225600", "1798761599"),
]


@pytest.mark.parametrize(("zone", "start", "end", "nuki_from", "nuki_until", "twon_from", "twon_to"), CASES)
def test_local_days_become_the_right_utc_instants(zone: str, start: date, end: date, nuki_from: str,
                                                  nuki_until: str, twon_from: str, twon_to: str) -> None:
    first, last = date_labels(window_of(Access(valid_from=start, valid_until=end), zone))
    assert (nuki_date(first), nuki_date(last)) == (nuki_from, nuki_until)
    assert (twon_seconds(first), twon_seconds(last)) == (twon_from, twon_to)
    assert first is not None and first.endswith(f"[{zone}]") and first.startswith(f"{start}T00:00:00")
    assert last is not None and last.startswith(f"{end}T23:59:59")


def test_a_date_only_window_sends_no_times_and_every_weekday() -> None:
    access = Access(valid_from=date(2026, 1, 1), valid_until=date(2027, 12, 31))
    attrs = code_attrs("tc:Ana Costa", "345678", access, BA)
    body = auth_body(attrs)
    assert body["allowedFromTime"] == 0 and body["allowedUntilTime"] == 0
    assert body["allowedWeekDays"] == 127
    assert body["allowedFromDate"] == "2025-12-31T23:00:00.000Z"
    assert body["allowedUntilDate"] == "2027-12-31T22:59:59.000Z"
    assert attrs["valid_from"] == "2026-01-01T00:00:00+01:00[Europe/Bratislava]"


@pytest.mark.parametrize("zone", [BA, NY, "UTC"])
def test_times_of_day_are_minutes_in_the_locks_own_zone_whatever_the_season(zone: str) -> None:
    access = Access(weekdays=["mon", "tue", "wed", "thu", "fri"], from_time=time(8), until_time=time(18),
                    valid_from=date(2026, 3, 1), valid_until=date(2026, 11, 30))
    body = auth_body(code_attrs("tc:Maria", "345678", access, zone))
    assert (body["allowedFromTime"], body["allowedUntilTime"]) == (480, 1080)
    assert body["allowedWeekDays"] == weekday_mask(["mon", "tue", "wed", "thu", "fri"]) == 124
    assert minutes(time(23, 59)) == 1439


@pytest.mark.parametrize("zone", [BA, NY])
def test_what_the_providers_store_reads_back_as_the_same_local_window(zone: str) -> None:
    access = Access(valid_from=date(2026, 3, 29), valid_until=date(2026, 10, 25))
    attrs = code_attrs("tc:A", "345678", access, zone)
    assert live_code_attrs(auth_body(attrs), zone) == attrs
    start, end = date_labels(window_of(access, zone))
    user = {"name": "A", "pin": None, "qr": None, "valid_from": start, "valid_until": end}
    assert live_user_attrs(user_body("U", user), zone) == user


def test_the_plan_describes_a_window_in_local_time_with_its_zone() -> None:
    access = Access(weekdays=["mon", "tue", "wed", "thu", "fri"], from_time=time(8), until_time=time(18))
    assert describe(window_of(access, BA)) == "Mon\u2013Fri 08:00\u201318:00 Europe/Bratislava"
    assert describe(window_of(Access(weekdays=["sat", "sun"]), BA)) == "Sat,Sun Europe/Bratislava"
    assert describe(window_of(Access(), BA)) == "any time"
    dated = Access(valid_from=date(2026, 1, 1), valid_until=date(2027, 12, 31))
    assert describe(window_of(dated, BA)) == "2026-01-01 to 2027-12-31 Europe/Bratislava"


@pytest.mark.parametrize(("at", "open_"), [
    (datetime(2026, 12, 24, 9, 0), True),     # Thursday morning, local
    (datetime(2026, 12, 24, 18, 0), False),   # the window ends at 18:00
    (datetime(2026, 12, 26, 9, 0), False),    # Saturday
    (datetime(2026, 3, 30, 7, 30), False),    # Monday 07:30 local (05:30 UTC)
    (datetime.fromisoformat("2026-03-30T06:30:00+00:00"), True),  # 08:30 in Bratislava (CEST)
])
def test_is_open_answers_in_the_propertys_local_time(at: datetime, open_: bool) -> None:
    access = Access(weekdays=["mon", "tue", "wed", "thu", "fri"], from_time=time(8), until_time=time(18))
    assert is_open(window_of(access, BA), at) is open_


@pytest.mark.parametrize(("text", "minutes_"), [("2h", 120), ("90m", 90), ("1d", 1440), ("1h30m", 90),
                                                ("30d", 43200)])
def test_durations_read_as_people_write_them(text: str, minutes_: int) -> None:
    assert parse_duration(text).total_seconds() == minutes_ * 60


@pytest.mark.parametrize("text", ["", "2", "forever", "0m", "31d", "2h 30m", "-1h"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|between"):
        parse_duration(text)
