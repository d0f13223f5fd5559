"""Pure: a parsed payload → its stable event ID (for de-duplication) and the routing keys it names.

Event IDs, per provider:
- Hospitable: the envelope ``id`` (a UUID).
- WhatsApp: one delivery may batch several messages and status updates. Each item has a key
  (``msg:<wamid>``; ``status:<wamid>:<status>``, since sent/delivered/read share the message's wamid;
  ``group:<request_id or group_id>:<type>``). One item → its key; several → ``batch:`` + SHA-256 of
  the sorted keys, so the same batch always gets the same ID whatever its order. The item keys are
  also recorded one by one (``item_keys``): a delivery none of whose items is new is a duplicate, even
  when Meta batches them differently on a retry.
  A change that carries none of these (the account-level fields: ``message_template_status_update``,
  ``template_category_update``, ``phone_number_quality_update``, ``account_update``, … and any other
  field) has no ID of its own; its key is ``chg:<field>:<entry id>:<event>:<time>:<digest>``, from the
  entry's WABA ID, the field, the value's ``event`` (its status, e.g. ``APPROVED``, ``FLAGGED``), the
  entry's ``time`` (Meta's trigger timestamp: fixed when the event happens, resent unchanged on every
  retry) or else the value's ``timestamp``, and a digest of the canonical JSON of the value (what the
  event says: template ID, old and new category, limits…). A retry, alone or batched with other events,
  gets the same key; the same event happening again later has a new trigger time, so a new key.
- Nuki and Beds24 document no event ID; and any payload without one: ``sha256:`` + digest of the raw
  body, so an identical redelivery is still stored once.
IDs the log column cannot hold as sent (longer than it, or with a NUL or a lone surrogate) are replaced by their
digest (tenancy.escape.storable_key): one-to-one, where an escape or a cut would give two events one key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tenancy.escape import storable_key

MAX_EVENT_ID = 255
# Outside text in an item key (it is shown by `tenantctl webhooks log`): Meta's field and event names
# are identifiers; anything else becomes "?".
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{1,48}")
CHANGE_DIGEST_CHARS = 24


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def _fit(event_id: str) -> str:
    # An ID the log cannot hold as sent (too long, a NUL, a lone surrogate) is kept by its digest: one-to-one.
    return storable_key(event_id, MAX_EVENT_ID)


def body_digest_id(body: bytes) -> str:
    return "sha256:" + _digest(body)


def _id(v: object) -> str | None:
    """An ID as Meta sends it: a string, sometimes a number; anything else names nothing."""
    if isinstance(v, bool) or not isinstance(v, str | int):
        return None
    return str(v)


@dataclass(frozen=True)
class WhatsAppChange:
    """Where one change sits in a WhatsApp payload and the routing keys it names.

    ``entry``/``change``: indexes into ``payload["entry"]`` and that entry's ``changes``;
    ``account``: the entry's ``id``, the WABA ID (spec: ``Entry.id``); ``phone``: the change's
    ``value.metadata.phone_number_id``, None for the account-level fields that name no phone number.
    """

    entry: int
    change: int
    account: str | None
    phone: str | None


def whatsapp_changes(payload: Mapping[str, Any]) -> list[WhatsAppChange]:
    """Every change of a WhatsApp payload (spec: ``WebhookPayload.entry[].changes[]``), in order."""
    found: list[WhatsAppChange] = []
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return found
    for i, entry in enumerate(entries):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(changes, list):
            continue
        account = _id(entry.get("id"))
        for j, change in enumerate(changes):
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            phone = _id(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None
            found.append(WhatsAppChange(i, j, account, phone))
    return found


def whatsapp_shape_problem(payload: Mapping[str, Any]) -> str | None:
    """``"unexpected-shape"`` when the routing keys cannot be read in the documented shape, else None.

    Spec: ``WebhookPayload.entry[]`` objects with an ``id`` (string) and ``changes[]`` objects whose
    ``value`` is an object and whose ``value.metadata`` (when present) is an object with a string
    ``phone_number_id``. A payload in any other shape would skip the routing checks, so it is refused.
    """
    entries = payload.get("entry")
    if not isinstance(entries, list):  # no entry at all names no routing key: missing-routing-key
        return None if entries is None else "unexpected-shape"
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            return "unexpected-shape"
        if "id" in entry and _id(entry["id"]) is None:
            return "unexpected-shape"
        for change in entry["changes"]:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                return "unexpected-shape"
            if "metadata" not in value:
                continue
            metadata = value["metadata"]
            if not isinstance(metadata, dict):
                return "unexpected-shape"
            if "phone_number_id" in metadata and _id(metadata["phone_number_id"]) is None:
                return "unexpected-shape"
    return None


def whatsapp_routing_keys(payload: Mapping[str, Any]) -> list[str | None]:
    """The ``metadata.phone_number_id`` of every change, in order; None where a change names none."""
    return [c.phone for c in whatsapp_changes(payload)]


def whatsapp_subset(payload: Mapping[str, Any], picks: Collection[tuple[int, int]]) -> dict[str, Any]:
    """The payload with only the changes at PICKS, (entry index, change index) as in WhatsAppChange.

    Entries keep their other keys (``id``, ``time``); entries left without a picked change are dropped.
    """
    entries = payload.get("entry")
    out: dict[str, Any] = {k: v for k, v in payload.items() if k != "entry"}
    kept: list[Any] = []
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(changes, list):
            continue
        mine = [c for j, c in enumerate(changes) if (i, j) in picks]
        if mine:
            kept.append({**entry, "changes": mine})
    out["entry"] = kept
    return out


def _token(v: object) -> str:
    text = _id(v) or ""
    return text if _TOKEN.fullmatch(text) else "?"


def _change_key(entry: Mapping[str, Any], change: Mapping[str, Any], value: Mapping[str, Any]) -> str:
    """The key of a change that carries no message, status or group ID (see the module docstring)."""
    at = entry.get("time") if _id(entry.get("time")) is not None else value.get("timestamp")
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = _digest(canonical.encode("utf-8"))[:CHANGE_DIGEST_CHARS]
    return (f"chg:{_token(change.get('field'))}:{_token(entry.get('id'))}:{_token(value.get('event'))}:"
            f"{_token(at)}:{digest}")


def _ids_of(value: Mapping[str, Any]) -> Iterator[str]:
    for m in value.get("messages") or []:
        if isinstance(m, dict) and m.get("id"):
            yield f"msg:{m['id']}"
    for s in value.get("statuses") or []:
        if isinstance(s, dict) and s.get("id"):
            yield f"status:{s['id']}:{s.get('status', '')}"
    for g in value.get("groups") or []:
        if isinstance(g, dict) and (g.get("request_id") or g.get("group_id")):
            yield f"group:{g.get('request_id') or g.get('group_id')}:{g.get('type', '')}"


def _whatsapp_item_keys(payload: Mapping[str, Any]) -> Iterator[str]:
    entries = payload.get("entry")
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            continue
        for change in changes:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            keys = list(_ids_of(value))
            yield from keys if keys else [_change_key(entry, change, value)]


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
    # Exactly as sent: " evt-2 " is not "evt-2" (a sender's own ID, compared byte for byte).
    if isinstance(eid, str) and eid.strip():
        return _fit(eid)
    return body_digest_id(body)


def event_id(provider: str, payload: Mapping[str, Any], body: bytes) -> str:
    if provider == "whatsapp":
        return whatsapp_event_id(payload, body)
    if provider == "hospitable":
        return hospitable_event_id(payload, body)
    return body_digest_id(body)
