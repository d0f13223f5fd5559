"""Event IDs are stable per delivery; routing keys are read from every change."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from webhook_server.events import MAX_EVENT_ID, event_id, whatsapp_routing_keys

from .helpers import ACME_PHONE, wa_payload


def _statuses(*items: tuple[str, str]) -> dict[str, Any]:
    return {"entry": [{"changes": [{"value": {"metadata": {"phone_number_id": ACME_PHONE},
                                              "statuses": [{"id": i, "status": s} for i, s in items]}}]}]}


def test_single_message_id_is_the_event_id() -> None:
    assert event_id("whatsapp", wa_payload(ACME_PHONE, "wamid.A"), b"") == "msg:wamid.A"


def test_a_batch_gets_one_id_whatever_the_order() -> None:
    one = event_id("whatsapp", wa_payload(ACME_PHONE, "wamid.A", "wamid.B"), b"x")
    other = event_id("whatsapp", wa_payload(ACME_PHONE, "wamid.B", "wamid.A"), b"y")
    assert one == other
    assert one.startswith("batch:")
    assert one != event_id("whatsapp", wa_payload(ACME_PHONE, "wamid.A", "wamid.C"), b"x")


def test_status_updates_of_one_message_are_distinct_events() -> None:
    sent = event_id("whatsapp", _statuses(("wamid.A", "sent")), b"")
    read = event_id("whatsapp", _statuses(("wamid.A", "read")), b"")
    assert sent != read


@pytest.mark.parametrize(
    ("provider", "payload", "expected"),
    [
        ("hospitable", {"id": "0f1e2d3c-uuid", "action": "reservation.created"}, "0f1e2d3c-uuid"),
        ("hospitable", {"action": "reservation.created"}, "sha256:" + hashlib.sha256(b"BODY").hexdigest()),
        ("nuki", {"smartlockId": 17010001, "feature": "DEVICE_STATUS"},
         "sha256:" + hashlib.sha256(b"BODY").hexdigest()),
        ("beds24", {"timeStamp": "2026-01-01", "booking": {"id": 1}},
         "sha256:" + hashlib.sha256(b"BODY").hexdigest()),
        ("whatsapp", {"entry": []}, "sha256:" + hashlib.sha256(b"BODY").hexdigest()),
    ],
)
def test_event_ids(provider: str, payload: dict[str, Any], expected: str) -> None:
    assert event_id(provider, payload, b"BODY") == expected


def test_overlong_ids_fit_the_log_column() -> None:
    eid = event_id("hospitable", {"id": "x" * 1000}, b"")
    assert len(eid) <= MAX_EVENT_ID
    assert eid.startswith("sha256:")


@pytest.mark.parametrize(
    ("payload", "keys"),
    [
        (wa_payload("111"), ["111"]),
        ({"entry": [{"changes": [{"value": {"metadata": {"phone_number_id": "1"}}},
                                 {"value": {"metadata": {"phone_number_id": "2"}}}]},
                    {"changes": [{"value": {"metadata": {"phone_number_id": "3"}}}]}]}, ["1", "2", "3"]),
        ({"entry": [{"changes": [{"value": {}}]}]}, [None]),
        ({"entry": [{"changes": [{"value": {"metadata": {"phone_number_id": True}}}]}]}, [None]),
        ({"entry": "nope"}, []),
        ({}, []),
    ],
)
def test_routing_keys(payload: dict[str, Any], keys: list[str | None]) -> None:
    assert whatsapp_routing_keys(payload) == keys
