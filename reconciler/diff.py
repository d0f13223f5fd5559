"""desired x live → changes. Pure: no I/O, no provider knowledge beyond the resources themselves.

Resources pair up by address. Attributes the provider does not report (None on the live side for a
Sensitive desired value, such as a verify token Meta never returns) cannot be compared: each provider
decides what it can observe and leaves the rest out of `attrs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import ACTION_ORDER, Action, Change, FieldChange, Resource


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    keys = sorted(set(old) | set(new))
    return tuple(FieldChange(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k))


def diff(desired: Iterable[Resource], live: Iterable[Resource], *, prune: bool = False) -> list[Change]:
    """Create what is desired and missing, update what differs, delete what we own and no longer want.

    Live resources we do not own are reported, and deleted only when `prune` asks for it.
    """
    want = {r.address: r for r in desired}
    have = {r.address: r for r in live}
    changes: list[Change] = []
    for addr, d in want.items():
        lv = have.get(addr)
        if lv is None:
            changes.append(Change(Action.CREATE, d.provider, d.kind, d.tenant, addr,
                                  field_changes({}, d.attrs), desired=d))
            continue
        fields = field_changes(lv.attrs, d.attrs)
        action = Action.UPDATE if fields else Action.NOOP
        changes.append(Change(action, d.provider, d.kind, d.tenant, addr, fields, desired=d, live=lv))
    for addr, lv in have.items():
        if addr in want:
            continue
        if lv.owned or prune:
            changes.append(Change(Action.DELETE, lv.provider, lv.kind, lv.tenant, addr,
                                  field_changes(lv.attrs, {}), live=lv))
        else:
            changes.append(Change(Action.REPORT, lv.provider, lv.kind, lv.tenant, addr, live=lv,
                                  note="not managed by tenantctl: left untouched"))
    return sort_changes(changes)


def adoption(desired: Resource, live: Resource, note: str) -> Change:
    """Take over a foreign live resource that stands for `desired`: an UPDATE of `live` (its remote ID) to
    the desired attributes, marked as an adoption, so the plan shows it before anything is written."""
    return Change(Action.UPDATE, desired.provider, desired.kind, desired.tenant, desired.address,
                  field_changes(live.attrs, desired.attrs), desired=desired, live=live, note=note, adoption=True)


def sort_changes(changes: Iterable[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: (c.tenant, c.provider, ACTION_ORDER[c.action], c.address))
