"""Who can open what: the access matrix of a tenant and a readable access diff of a plan. Pure.

- `matrix(tenant)`: one `Grant` per door (a Nuki lock or a property's 2N intercom) and teammate who can
  open it, with the means (keypad code, 2N PIN, 2N QR) and the window in the property's local time.
  Doors nobody can open are listed too (`Door`s without grants).
- `open_at(grants, at)`: the grants that let their holder in at a local moment (naive: the property's
  local time).
- `access_diff(changes)`: from a plan's keypad-code and 2N directory-user changes, one line per teammate
  ("maria: gains lock 17010003, Mon-Fri 08:00-18:00 Europe/Bratislava"; "tom: loses all access"), so a
  reviewer sees access changes without reading keypad-auth attributes. Teammates are named by their key
  (the last part of the address) or, for a code of ours no longer declared, by the name on the lock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from reconciler.model import Action, Change
from tenancy.access_time import Window, describe, is_open, parse_label, window_of, zone_name
from tenancy.model import Tenant, Weekday

NUKI_MARKER = "tc:"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(text: str) -> str:
    """Outside text (names from a file or a device) with control characters removed: safe on a terminal."""
    return _CONTROL.sub("", text)


@dataclass(frozen=True)
class Door:
    tenant: str
    prop_key: str
    property_name: str
    kind: str  # "nuki_lock" | "intercom"
    ident: str  # lock ID or the intercom's device ID
    zone: str

    @property
    def label(self) -> str:
        return f"Nuki lock {self.ident}" if self.kind == "nuki_lock" else f"2N intercom {self.ident}"


@dataclass(frozen=True)
class Grant:
    door: Door
    teammate: str
    name: str
    means: tuple[str, ...]  # "keypad" | "pin" | "qr"
    window: Window

    def as_json(self) -> dict[str, Any]:
        w = self.window
        return {"teammate": self.teammate, "name": self.name, "means": list(self.means),
                "weekdays": [d.value for d in w.weekdays],
                "from_time": w.from_time.strftime("%H:%M") if w.from_time else None,
                "until_time": w.until_time.strftime("%H:%M") if w.until_time else None,
                "valid_from": w.valid_from.isoformat() if w.valid_from else None,
                "valid_until": w.valid_until.isoformat() if w.valid_until else None,
                "timezone": w.zone, "window": describe(w)}


@dataclass(frozen=True)
class DoorAccess:
    door: Door
    grants: tuple[Grant, ...] = field(default_factory=tuple)


def matrix(tenant: Tenant) -> list[DoorAccess]:
    """Every door of the tenant, in file order, with who can open it (by teammate order in the file)."""
    out: list[DoorAccess] = []
    for prop in tenant.properties:
        zone_id = zone_name(tenant, prop)
        doors = [Door(tenant.slug, prop.key, prop.name, "nuki_lock", str(lock), zone_id)
                 for lock in prop.nuki_lock_ids]
        if prop.intercom is not None:
            doors.append(Door(tenant.slug, prop.key, prop.name, "intercom", prop.intercom.device_id, zone_id))
        for door in doors:
            grants = []
            for tm in tenant.teammates:
                a = tm.access
                if a is None or prop.key not in tm.properties:
                    continue
                means = (("keypad",) if a.keypad_code is not None and tenant.nuki is not None else ()) \
                    if door.kind == "nuki_lock" else \
                    tuple(m for m, s in (("pin", a.intercom_pin), ("qr", a.intercom_qr)) if s is not None)
                if means:
                    w = window_of(a, zone_id)
                    if door.kind == "intercom":  # a 2N directory user holds dates only: any day, any hour
                        w = Window(zone_id, valid_from=w.valid_from, valid_until=w.valid_until)
                    grants.append(Grant(door, tm.key, tm.name, means, w))
            out.append(DoorAccess(door, tuple(grants)))
    return out


def open_at(rows: Sequence[DoorAccess], at: datetime) -> list[DoorAccess]:
    """The same doors, each with only the grants that open it at `at` (naive: each door's local time)."""
    return [DoorAccess(r.door, tuple(g for g in r.grants if is_open(g.window, at))) for r in rows]


# Rendering the matrix ----------------------------------------------------------------------------------
def matrix_text(rows: Sequence[DoorAccess], at: datetime | None = None) -> str:
    lines: list[str] = []
    current = ""
    for r in rows:
        d = r.door
        head = f"{d.tenant} / {d.prop_key} ({plain(d.property_name)}), {d.zone}"
        if head != current:
            lines.append(head)
            current = head
        lines.append(f"  {d.label}:" + ("" if r.grants else " nobody"
                                         + (" at that moment" if at is not None else "")))
        lines += [f"    {plain(g.name)} ({g.teammate}): {', '.join(g.means)}; {describe(g.window)}"
                  for g in r.grants]
    return "\n".join(lines)


def matrix_markdown(rows: Sequence[DoorAccess]) -> str:
    lines = ["| tenant | property | door | teammate | by | when (local) |", "|---|---|---|---|---|---|"]
    for r in rows:
        d = r.door
        cells = [d.tenant, d.prop_key, d.label]
        if not r.grants:
            lines.append("| " + " | ".join([*cells, "nobody", "", ""]) + " |")
        lines += ["| " + " | ".join([*cells, md(g.name), ", ".join(g.means), describe(g.window)]) + " |"
                  for g in r.grants]
    return "\n".join(lines)


def matrix_json(rows: Sequence[DoorAccess]) -> list[dict[str, Any]]:
    return [{"tenant": r.door.tenant, "property": r.door.prop_key, "door": r.door.kind, "id": r.door.ident,
             "timezone": r.door.zone, "teammates": [g.as_json() for g in r.grants]} for r in rows]


def md(text: str) -> str:
    return plain(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


# The access diff of a plan -----------------------------------------------------------------------------
_ACCESS_KINDS = {("nuki", "keypad_code"), ("twon", "dir_user")}
_WINDOW_FIELDS = {"weekdays", "from_time", "until_time", "valid_from", "valid_until"}


def _key(c: Change) -> str:
    return c.address.split("[", 1)[1].rstrip("]").split("/")[-1]


def _shown(c: Change) -> str | None:
    r = c.desired or c.live
    name = r.attrs.get("name") if r is not None else None
    return plain(str(name).removeprefix(NUKI_MARKER)) if name else None


def _teammate(c: Change, keys: Mapping[str, str]) -> str:
    """The teammate's key; for a code of ours no teammate declares, the name it carries on the device."""
    key = _key(c)
    if not key.startswith("~"):
        return key
    shown = _shown(c)
    return keys.get(shown, shown) if shown else key


def _door(c: Change) -> str:
    parts = c.address.split("[", 1)[1].rstrip("]").split("/")
    return f"lock {parts[1]}" if c.provider == "nuki" else f"the intercom of {parts[1]}"


def window_of_attrs(attrs: Mapping[str, Any]) -> str:
    """Compared attributes (a keypad code or a 2N user) → `Mon-Fri 08:00-18:00, … Europe/Bratislava`."""
    zone_id = ""  # unknown when only weekdays are set: they are the lock's local days all the same
    days: dict[str, date | None] = {}
    for key in ("valid_from", "valid_until"):
        value = attrs.get(key)
        days[key] = None
        if isinstance(value, str) and value:
            try:
                days[key] = parse_label(value).date()
            except ValueError:
                continue
            if value.endswith("]"):
                zone_id = value.rsplit("[", 1)[1][:-1]
    weekdays = attrs.get("weekdays")
    hours: list[time | None] = []
    for key in ("from_time", "until_time"):  # "08:00 Europe/Bratislava": the lock's zone
        value = attrs.get(key)
        parts = value.split() if isinstance(value, str) else []
        hours.append(time.fromisoformat(parts[0]) if parts else None)
        if len(parts) > 1:
            zone_id = parts[1]
    w = Window(zone_id,
               tuple(Weekday(d) for d in weekdays) if isinstance(weekdays, list) else tuple(Weekday),
               hours[0], hours[1], days["valid_from"], days["valid_until"])
    return describe(w)


def access_diff(changes: Iterable[Change]) -> list[str]:
    """One line per teammate whose access the plan changes, in the order they first appear.

    `changes` should include the plan's no-ops: a teammate with deletions and nothing kept or added
    "loses all access"; without no-ops (a plan read back from JSON) only the doors lost are named.
    """
    items = [c for c in changes if (c.provider, c.kind) in _ACCESS_KINDS]
    # A teammate's codes on doors they lost carry only their name: map it back to their key.
    keys = {shown: _key(c) for c in items if not _key(c).startswith("~") and (shown := _shown(c))}
    kept: set[str] = {_teammate(c, keys) for c in items if c.desired is not None}
    has_noops = any(c.action is Action.NOOP for c in items)
    gains: dict[str, list[tuple[str, str]]] = {}
    losses: dict[str, list[str]] = {}
    other: dict[str, list[str]] = {}
    order: list[str] = []
    for c in items:
        who = _teammate(c, keys)
        if c.action in (Action.NOOP, Action.MANUAL):
            continue
        if who not in order:
            order.append(who)
        if c.action is Action.CREATE and c.desired is not None:
            gains.setdefault(who, []).append((_door(c), window_of_attrs(c.desired.attrs)))
        elif c.action is Action.DELETE:
            losses.setdefault(who, []).append(_door(c))
        elif c.action is Action.UPDATE and c.desired is not None:
            names = {f.field for f in c.fields}
            what = []
            if names & _WINDOW_FIELDS:
                what.append(f"window now {window_of_attrs(c.desired.attrs)}")
            if names & {"code", "pin", "qr"}:
                what.append("new " + "/".join(sorted(n for n in names & {"code", "pin", "qr"})
                                                  ).replace("code", "keypad code"))
            if names - _WINDOW_FIELDS - {"code", "pin", "qr"}:
                what.append("renamed" if "name" in names else "updated")
            other.setdefault(who, []).append(f"{_door(c)}: {', '.join(what)}")
        elif c.action is Action.REPORT and c.desired is not None:
            other.setdefault(who, []).append(f"{_door(c)}: blocked ({c.note.split(':', 1)[0]})")
    lines = []
    for who in order:
        parts = []
        by_window: dict[str, list[str]] = {}
        for door, window in gains.get(who, []):
            by_window.setdefault(window, []).append(door)
        parts += [f"gains {', '.join(doors)}, {window}" for window, doors in by_window.items()]
        if who in losses:
            parts.append("loses all access" if has_noops and who not in kept
                         else f"loses {', '.join(losses[who])}")
        parts += other.get(who, [])
        if parts:
            lines.append(f"{who}: " + "; ".join(parts))
    return lines


__all__ = [
    "Door",
    "DoorAccess",
    "Grant",
    "access_diff",
    "matrix",
    "matrix_json",
    "matrix_markdown",
    "matrix_text",
    "open_at",
    "plain",
    "revocations_first",
    "revokes_access",
    "still_open",
    "window_of_attrs",
]


# Offboarding ------------------------------------------------------------------------------------------
def revokes_access(c: Change) -> bool:
    """A deletion of a keypad code or a 2N user: access taken away, applied first and always attempted."""
    return c.action is Action.DELETE and (c.provider, c.kind) in _ACCESS_KINDS


def revocations_first(changes: Sequence[Change]) -> list[Change]:
    """The same changes, revocations of access first (otherwise in their order): a departed teammate's
    codes go before anything else can fail."""
    return sorted(changes, key=lambda c: not revokes_access(c))


def still_open(failed: Iterable[Change]) -> list[str]:
    """Revocations that did not happen, in words: `Tom Berg: still opens lock 17010003`."""
    items = list(failed)
    keys = {shown: _key(c) for c in items if not _key(c).startswith("~") and (shown := _shown(c))}
    return [f"{_teammate(c, keys)}: still opens {_door(c)}" for c in items if revokes_access(c)]
