"""Pure: a parsed payload → its stable event ID (for de-duplication) and the routing keys it names.

Event IDs, per provider:
- Hospitable: the envelope ``id`` (a UUID).
- WhatsApp: one delivery may batch several messages and status updates. Each item has a key
  (``msg:<wamid>``; ``status:<wamid>:<status>``, since sent/delivered/read share the message's wamid;
  ``group:<request_id or group_id>:<type>``). One item → its key; several → ``batch:`` + SHA-256 of
  the sorted keys, so the same batch always gets the same ID whatever its order. The item keys are
  also recorded one by one (``item_keys``): a delivery none of whose items is new is a duplicate, even
  when Meta batches them differently on a retry.
- Nuki and Beds24 document no event ID; and any payload without one: ``sha256:`` + digest of the raw
  body, so an identical redelivery is still stored once.
IDs longer than the log column allows are replaced by their digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

MAX_EVENT_ID = 255


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _fit(event_id: str) -> str:
    # surrogatepass: a lone surrogate from the JSON must not make the id unhashable (a 500)
    return event_id if len(event_id) <= MAX_EVENT_ID else "sha256:" + _digest(event_id.encode("utf-8", "surrogatepass"))


def body_digest_id(body: bytes) -> str:
    return "sha256:" + _digest(body)


def _changes(payload: Mapping[str, Any]) -> Iterator[Any]:
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if isinstance(changes, list):
            yield from changes


def whatsapp_routing_keys(payload: Mapping[str, Any]) -> list[str | None]:
    """The ``metadata.phone_number_id`` of every change, in order; None where a change names none."""
    found: list[str | None] = []
    for change in _changes(payload):
        value = change.get("value") if isinstance(change, dict) else None
        metadata = value.get("metadata") if isinstance(value, dict) else None
        pnid = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
        found.append(str(pnid) if isinstance(pnid, str | int) and not isinstance(pnid, bool) else None)
    return found


def _whatsapp_item_keys(payload: Mapping[str, Any]) -> Iterator[str]:
    for change in _changes(payload):
        value = change.get("value") if isinstance(change, dict) else None
        if not isinstance(value, dict):
            continue
        for m in value.get("messages") or []:
            if isinstance(m, dict) and m.get("id"):
                yield f"msg:{m['id']}"
        for s in value.get("statuses") or []:
            if isinstance(s, dict) and s.get("id"):
                yield f"status:{s['id']}:{s.get('status', '')}"
        for g in value.get("groups") or []:
            if isinstance(g, dict) and (g.get("request_id") or g.get("group_id")):
                yield f"group:{g.get('request_id') or g.get('group_id')}:{g.get('type', '')}"


def item_keys(provider: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The events a delivery carries (WhatsApp only): each is stored once, whatever batch brings it."""
    if provider != "whatsapp":
        return ()
    return tuple(sorted({_fit(k) for k in _whatsapp_item_keys(payload)}))


def whatsapp_event_id(payload: Mapping[str, Any], body: bytes) -> str:
    keys = sorted(set(_whatsapp_item_keys(payload)))
    if not keys:
        return body_digest_id(body)
    if len(keys) == 1:
        return _fit(keys[0])
    return "batch:" + _digest("\n".join(keys).encode("utf-8", "surrogatepass"))


def hospitable_event_id(payload: Mapping[str, Any], body: bytes) -> str:
    eid = payload.get("id")
    if isinstance(eid, str) and eid.strip():
        return _fit(eid.strip())
    return body_digest_id(body)


def event_id(provider: str, payload: Mapping[str, Any], body: bytes) -> str:
    if provider == "whatsapp":
        return whatsapp_event_id(payload, body)
    if provider == "hospitable":
        return hospitable_event_id(payload, body)
    return body_digest_id(body)
