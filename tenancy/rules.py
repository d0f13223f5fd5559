"""Rules beyond the schema: references inside a tenant, routing keys, and uniqueness across tenants.

Pure functions over loaded tenants; each finding points at the offending node. A routing key shared by
two tenants would deliver one tenant's guests to another, so every routing key must be unique.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr

from tenancy.findings import Finding, Severity, field_path
from tenancy.identity_memo import IdentityMemo
from tenancy.model import PLACEHOLDER, Property, Status, Tenant
from tenancy.yaml_source import Path as YPath

if TYPE_CHECKING:
    from tenancy.loader import LoadedTenant


def _at(lt: LoadedTenant, path: YPath, message: str, hint: str, rule: str,
        severity: Severity = Severity.ERROR) -> Finding:
    pos = lt.where(path)
    return Finding(str(lt.path), pos.line, pos.column, field_path(path), message, hint, rule, severity)


def tenant_findings(lt: LoadedTenant, *, placeholders: bool = True) -> Iterator[Finding]:
    """The rules within one tenant. PLACEHOLDERS=False skips the search for the placeholder value (a walk of
    the whole model): for a caller that knows none of the tenant's values holds it."""
    t = lt.tenant
    yield from _unique_keys(lt, "properties", [p.key for p in t.properties])
    yield from _unique_keys(lt, "teammates", [m.key for m in t.teammates])
    keys = {p.key for p in t.properties}
    for i, m in enumerate(t.teammates):
        for j, ref in enumerate(m.properties):
            if ref not in keys:
                yield _at(lt, ("teammates", i, "properties", j), f"unknown property {ref!r}",
                          f"use one of: {', '.join(sorted(keys)) or '(no properties defined)'}", "unknown-property")
        if m.access is None:
            continue
        places = [t.property(k) for k in m.properties]
        if m.access.keypad_code is not None:
            if t.nuki is None:
                yield _at(lt, ("teammates", i, "access", "keypad_code"), "a keypad code needs the `nuki` section",
                          "add nuki.api_token or remove the keypad code", "keypad-without-nuki")
            elif not any(p and p.nuki_lock_ids for p in places):
                yield _at(lt, ("teammates", i, "access", "keypad_code"),
                          "none of this teammate's properties has a Nuki lock",
                          "add nuki_lock_ids to a property or remove the keypad code", "keypad-without-lock")
        if m.access.intercom_pin is not None and not any(p and p.intercom for p in places):
            yield _at(lt, ("teammates", i, "access", "intercom_pin"),
                      "none of this teammate's properties has a 2N intercom",
                      "add an intercom to a property or remove the PIN", "pin-without-intercom")
    yield from _shared_codes(lt)
    yield from _routing_keys(lt, placeholders)
    yield from access_zone_findings(lt)


def access_zone_findings(lt: LoadedTenant) -> Iterator[Finding]:
    """Access days, hours and dates mean local time: a window without a zone would be read as UTC."""
    from tenancy.access_time import declares_window

    t = lt.tenant
    for i, m in enumerate(t.teammates):
        if m.access is not None and m.access.intercom_qr is not None and \
                not any((p := t.property(k)) is not None and p.intercom for k in m.properties):
            yield _at(lt, ("teammates", i, "access", "intercom_qr"),
                      "none of this teammate's properties has a 2N intercom",
                      "add an intercom to a property or remove the QR code", "qr-without-intercom")
        if not declares_window(m.access) or t.timezone is not None:
            continue
        if any((p := t.property(k)) is None or not p.timezone for k in m.properties) or not m.properties:
            yield _at(lt, ("teammates", i, "access"), "this access window (days, hours or dates) has no time zone: "
                      "it would be read as UTC, an hour or two off in Europe",
                      "add `timezone: Europe/Bratislava` (the IANA name of the properties' zone) at the top level "
                      "of the tenant file, or per property", "window-without-timezone")


def _locks(p: Property) -> list[str]:
    return [f"Nuki lock {lock}" for lock in p.nuki_lock_ids]


def _intercoms(p: Property) -> list[str]:
    return [f"2N device {p.intercom.device_id}"] if p.intercom else []


def _shared_codes(lt: LoadedTenant) -> Iterator[Finding]:
    """One keypad code per Nuki lock, one PIN per 2N device: the providers refuse a second (Nuki: 409),
    and a refused create stops that tenant's later changes, revocations of former teammates included.

    A teammate's code goes to every lock and device of every property they may enter, so two teammates
    collide when they share a code and a lock (or device). Values are compared, never printed.
    """
    t = lt.tenant
    for field, label, devices in (("keypad_code", "keypad code", _locks), ("intercom_pin", "2N PIN", _intercoms)):
        first: dict[tuple[str, str], int] = {}  # (device, code) → index of the first teammate using it
        for i, m in enumerate(t.teammates):
            code = getattr(m.access, field, None) if m.access else None
            if code is None:
                continue
            clashes: list[tuple[str, int]] = []
            for key in dict.fromkeys(m.properties):  # a property listed twice is one set of devices
                prop = t.property(key)
                for device in devices(prop) if prop else []:
                    other = first.setdefault((device, code.get_secret_value()), i)
                    if other != i:
                        clashes.append((device, other))
            if clashes:
                device, other = clashes[0]
                mate = t.teammates[other]
                pos = lt.where(("teammates", other, "access", field))
                more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
                yield _at(lt, ("teammates", i, "access", field),
                          f"same {label} as teammate {mate.key!r} (line {pos.line}) on {device}{more}: "
                          "the provider refuses a second one", f"give teammate {m.key!r} a {label} of their own",
                          f"shared-{field.replace('_', '-')}")


def _unique_keys(lt: LoadedTenant, section: str, keys: list[str]) -> Iterator[Finding]:
    seen: set[str] = set()
    for i, k in enumerate(keys):
        if k in seen:
            yield _at(lt, (section, i, "key"), f"key {k!r} is used twice in {section}", "give each a unique key",
                      "duplicate-key")
        seen.add(k)


def _routing_keys(lt: LoadedTenant, placeholders: bool = True) -> Iterator[Finding]:
    """An active tenant must have every routing key its integrations need, or events vanish silently."""
    t = lt.tenant
    sev = Severity.ERROR if t.status is Status.ACTIVE else Severity.WARNING
    if t.whatsapp is not None and t.whatsapp.phone_number_id is None:
        yield _at(lt, ("whatsapp",), "no phone_number_id: every inbound WhatsApp message for this tenant would be "
                  "silently rejected (it is the routing key)",
                  "set whatsapp.phone_number_id to the Meta phone-number ID (WhatsApp Manager → Phone numbers)",
                  "missing-routing-key", sev)
    if t.whatsapp is not None and t.whatsapp.business_account_id is None:
        yield _at(lt, ("whatsapp",), "no business_account_id: the WABA cannot be subscribed to this tenant's "
                  "webhook URL", "set whatsapp.business_account_id (WhatsApp Manager → Account tools)",
                  "missing-routing-key", sev)
    if placeholders:
        yield from _placeholders(lt, sev)
    if t.hospitable is not None and not any(p.hospitable_property_id for p in t.properties):
        yield _at(lt, ("hospitable",), "no property maps a hospitable_property_id: Hospitable events cannot be "
                  "matched to a property", "set properties[].hospitable_property_id", "missing-routing-key",
                  Severity.WARNING)
    if t.beds24 is not None and not t.beds24.property_ids:
        yield _at(lt, ("beds24",), "no beds24.property_ids: Beds24 bookings cannot be matched",
                  "list the Beds24 property IDs", "missing-routing-key", Severity.WARNING)


# Values that cannot be or hold the placeholder: skipped without a call (a tenant has ~100 of them).
_NOT_TEXT = frozenset({int, float, bool, type(None)})


def _placeholder_paths(node: object, path: YPath) -> Iterator[tuple[YPath, bool]]:
    """(path, is a secret) of every placeholder under NODE. A module function, not a recursive closure:
    such a closure is a reference cycle per call, left for the cyclic collector."""
    if isinstance(node, BaseModel | list):
        children = (((name, getattr(node, name)) for name in type(node).model_fields)
                    if isinstance(node, BaseModel) else enumerate(node))
        for key, value in children:
            if type(value) is str:  # the common leaf, checked here rather than one call deeper
                if value == PLACEHOLDER:
                    yield (*path, key), False
            elif type(value) not in _NOT_TEXT:
                yield from _placeholder_paths(value, (*path, key))
    elif isinstance(node, SecretStr):
        if node.get_secret_value() == PLACEHOLDER:
            yield path, True
    elif node == PLACEHOLDER:
        yield path, False


def _placeholders(lt: LoadedTenant, sev: Severity) -> Iterator[Finding]:
    for path, secret in _placeholder_paths(lt.tenant, ()):
        # A plain field is edited as it is (reviewers see it); only a secret needs sops.
        hint = "set the real value with `sops <file>` (it stays encrypted on disk)" if secret else \
            "replace it with the real value (a plain field: edit it directly or with `sops <file>`)"
        yield _at(lt, path, f"still the {PLACEHOLDER} placeholder", hint, "placeholder", sev)


# Each routing key: a name for messages and a function yielding (value, path) pairs of one tenant.
_UNIQUE: list[tuple[str, Callable[[Tenant], Iterator[tuple[object, YPath]]]]] = [
    ("slug", lambda t: iter([(t.slug, ("slug",))])),
    ("WhatsApp phone_number_id",
     lambda t: iter([(t.whatsapp.phone_number_id, ("whatsapp", "phone_number_id"))]
                    if t.whatsapp and t.whatsapp.phone_number_id else [])),
    ("Hospitable property ID",
     lambda t: ((p.hospitable_property_id.lower(), ("properties", i, "hospitable_property_id"))
                for i, p in enumerate(t.properties) if p.hospitable_property_id)),
    ("Nuki lock ID",
     lambda t: ((lock, ("properties", i, "nuki_lock_ids", j))
                for i, p in enumerate(t.properties) for j, lock in enumerate(p.nuki_lock_ids))),
    ("2N device ID",
     lambda t: ((p.intercom.device_id, ("properties", i, "intercom", "device_id"))
                for i, p in enumerate(t.properties) if p.intercom)),
    ("Beds24 property ID",
     lambda t: ((pid, ("beds24", "property_ids", j))
                for j, pid in enumerate(t.beds24.property_ids)) if t.beds24 else iter([])),
]


def _unique_key_values(t: Tenant) -> tuple[tuple[int, object, YPath], ...]:
    """Every routing key of T as (its index in _UNIQUE, value, path), in _UNIQUE's order."""
    return tuple((k, value, path) for k, (_, values) in enumerate(_UNIQUE) for value, path in values(t))


# A reload sees most tenants again as the same objects (tenancy.loader.TenantCache): their keys are kept.
_KEYS: IdentityMemo[Tenant, tuple[tuple[int, object, YPath], ...]] = IdentityMemo(_unique_key_values)


def cross_tenant_findings(tenants: Sequence[LoadedTenant]) -> Iterator[Finding]:
    """Every routing key is unique across tenants (and within one); the second use, in the order of
    TENANTS, is the error."""
    firsts: list[dict[object, tuple[LoadedTenant, YPath]]] = [{} for _ in _UNIQUE]
    for lt, keys in zip(tenants, _KEYS.map([lt.tenant for lt in tenants]), strict=True):
        for k, value, path in keys:
            first = firsts[k]
            if value in first:
                other, other_path = first[value]
                pos = other.where(other_path)
                owner = "this tenant" if other is lt else f"tenant {other.tenant.slug!r}"
                label = _UNIQUE[k][0]
                yield _at(lt, path, f"{label} {value} is already used by {owner} ({other.path}:{pos.line})",
                          "two tenants cannot share a slug: rename one of them (file and slug)"
                          if label == "slug" else "a routing key belongs to exactly one tenant: fix the ID",
                          "duplicate-routing-key")
            else:
                first[value] = (lt, path)
