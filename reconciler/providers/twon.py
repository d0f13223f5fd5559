"""2N IP intercoms: each property's device is the one the file names, and its directory holds our PINs.

Resources
- `twon.device[slug/<property>]`: the property's intercom answers `GET /api/system/info` (Digest auth with
  the intercom's username and password) and its `serialNumber` equals `device_id`. Another serial is a
  REPORT error (the host points at another device) and that device's directory is neither read nor written.
- `twon.dir_user[slug/<property>/<teammate>]`: one directory user per teammate with `access.intercom_pin`
  who may enter the property: our owner string `tenantctl`, a stable uuid (uuid5 of tenant, property and
  teammate, so a rename is an update, never a duplicate), the teammate's name, `access.pin` (Sensitive:
  compared by digest), `access.code` (the teammate's `access.intercom_qr` as the user's one switch code,
  what the device matches a scanned QR code against; Sensitive) and `validFrom`/`validTo` from the
  teammate's window. Users with another owner are
  never touched and not listed, except when one blocks ours by holding the same PIN (REPORT error) or our
  uuid. Users of ours that are no longer declared are deleted.
- `twon.schedule[slug/<teammate>]`: REPORT info when the teammate's access has weekdays or daily hours:
  a directory user carries no such window here (2N does it with device-side time profiles), so the PIN
  works any day and hour between valid_from and valid_until.

Dates: local days in the property's zone (tenancy.access_time): `valid_from` → Unix time of the first
instant of that day, `valid_until` → of its last second; "0" means unlimited. The plan shows them as
local labels with the zone.

The device answers application errors with HTTP 200 and `{"success": false, "error": {code, param,
description}}`: mapped by code to reconciler.errors; messages carry the code, the parameter's path and
the device's fixed description, never a value we sent. Writes are synchronous on the device: the write's
own answer (success and the uuid) is the confirmation, no read-back. Every write is a "set" keyed by our
stable uuid (a create that meets the entry updates it, an update that misses it creates it, a delete that
misses it is done), so retrying a write whose answer was lost is safe.

Base URL: `ctx.base_urls["twon"]` is a template with `{host}` and `{device_id}` (real: `https://{host}`,
sandbox: `http://sandbox.local/2n/{device_id}`); `/api/...` is appended. A DigestAuth per device is kept
(its nonce is reused), so only the first request to a device pays the 401 challenge.

Calls (per device): a no-op plan makes 2 requests (system/info, one dir/query), plus one 401 challenge
on the first contact; each write is 1 PUT.
"""

from __future__ import annotations

import hashlib
import threading
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.diff import diff, sort_changes
from reconciler.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    PermanentError,
    PermissionDenied,
    ProviderError,
)
from reconciler.health_status import Health, Sync
from reconciler.model import Action, Change, Resource, Sensitive, Severity, report
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext, error_check
from tenancy.access_time import (
    DEFAULT_ZONE,
    date_labels,
    expired,
    twon_label,
    twon_seconds,
    window_of,
    zone_name,
)
from tenancy.model import Intercom, Property, Teammate, Tenant, Weekday

NAME = "twon"
OWNER = "tenantctl"
UUID_NAMESPACE = uuidlib.uuid5(uuidlib.NAMESPACE_DNS, "twon.tenantctl")
QUERY_FIELDS = ("uuid", "deleted", "owner", "name", "access.pin", "access.code", "access.validFrom",
                "access.validTo")
UNLIMITED = "0"

# 2N HTTP API error codes (manual, "Replies to Requests"); 14 is "entry not found" on directory writes.
_ERRORS: Mapping[int, type[ProviderError]] = {
    1: InvalidRequest, 2: InvalidRequest, 3: InvalidRequest, 7: InvalidRequest, 11: InvalidRequest,
    12: InvalidRequest, 13: InvalidRequest, 4: PermissionDenied, 5: PermissionDenied, 10: PermissionDenied,
    8: AuthError, 9: AuthError, 14: NotFound,
}
_MASK = "(sensitive)"


def user_uuid(tenant: str, prop: str, teammate: str) -> str:
    """The stable uuid of a teammate's user on a property's device (2N shows uuids in upper case)."""
    return str(uuidlib.uuid5(UUID_NAMESPACE, f"{tenant}/{prop}/{teammate}")).upper()


def to_device_time(day: date | None, *, end: bool) -> str:
    """A date → the device's validFrom/validTo (Unix seconds as a string; "0" is unlimited)."""
    if day is None:
        return UNLIMITED
    moment = datetime.combine(day, time(23, 59, 59) if end else time(0, 0, 0), tzinfo=UTC)
    return str(int(moment.timestamp()))


def from_device_time(value: Any) -> str | None:
    """The device's validFrom/validTo → an ISO UTC time for the plan (None: unlimited)."""
    try:
        seconds = int(str(value or UNLIMITED))
    except ValueError:
        return str(value)
    if seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(value)  # shown as the device has it; differs from ours, so it is rewritten


def live_user_attrs(user: Mapping[str, Any], zone_id: str = DEFAULT_ZONE) -> dict[str, Any]:
    """A directory user as the device returns it → the attributes we compare (dates shown in `zone_id`)."""
    found = user.get("access")
    access: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    attrs: dict[str, Any] = {
        "name": user.get("name"),
        "valid_from": twon_label(access.get("validFrom"), zone_id),
        "valid_until": twon_label(access.get("validTo"), zone_id),
    }
    if "pin" in access:  # absent: the device did not show it, so it cannot be compared
        pin = access.get("pin")
        attrs["pin"] = Sensitive(str(pin)) if pin else None
    if "code" in access:  # the switch codes; ours holds at most one, the QR code
        codes = [str(c) for c in access.get("code") or [] if c]
        attrs["qr"] = Sensitive(codes[0]) if len(codes) == 1 else (
            Sensitive(",".join(codes)) if codes else None)
    return attrs


def user_body(uuid: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Compared attributes → the directory entry we send (create and update alike: the whole entry)."""
    pin = attrs.get("pin")
    access: dict[str, Any] = {
        "pin": pin.reveal() if isinstance(pin, Sensitive) else "",
        "validFrom": twon_seconds(attrs.get("valid_from")),
        "validTo": twon_seconds(attrs.get("valid_until")),
    }
    if "qr" in attrs:  # left out when the device hid the codes and the file has none to send
        qr = attrs.get("qr")
        access["code"] = [qr.reveal()] if isinstance(qr, Sensitive) else []
    return {"uuid": uuid, "name": attrs["name"], "owner": OWNER, "access": access}


def _device_time_of(iso: Any) -> str:
    if not iso:
        return UNLIMITED
    return str(int(datetime.strptime(str(iso), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()))


def _desired_attrs(tm: Teammate, zone_id: str = DEFAULT_ZONE) -> dict[str, Any]:
    access = tm.access
    assert access is not None  # noqa: S101  (callers filter)
    valid_from, valid_until = date_labels(window_of(access, zone_id))
    pin, qr = access.intercom_pin, access.intercom_qr
    return {
        "name": tm.name,
        "pin": Sensitive(pin.get_secret_value()) if pin is not None else None,
        "qr": Sensitive(qr.get_secret_value()) if qr is not None else None,
        "valid_from": valid_from,
        "valid_until": valid_until,
    }


def _with_intercom(tenant: Tenant) -> list[tuple[Property, Intercom]]:
    return [(p, p.intercom) for p in tenant.properties if p.intercom is not None]


def _pin_holders(tenant: Tenant, prop: Property) -> list[Teammate]:
    return [tm for tm in tenant.teammates if tm.access is not None and prop.key in tm.properties
            and (tm.access.intercom_pin is not None or tm.access.intercom_qr is not None)]


def _pins(tenant: Tenant) -> list[str]:
    return [s.get_secret_value() for tm in tenant.teammates if tm.access is not None
            for s in (tm.access.intercom_pin, tm.access.intercom_qr) if s is not None]


class TwoNProvider:
    name = NAME

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now  # a teammate whose valid_until has passed is offboarded: their user is removed
        # One DigestAuth per device: it reuses the device's nonce, saving a 401 round trip per request.
        self._auths: dict[tuple[str, str, str], httpx.DigestAuth] = {}
        self._auths_lock = threading.Lock()

    def applies_to(self, tenant: Tenant) -> bool:
        return any(p.intercom is not None for p in tenant.properties)

    # Desired --------------------------------------------------------------------------------------
    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        slug = tenant.slug
        out: list[Resource] = []
        for prop, ic in _with_intercom(tenant):
            out.append(Resource(NAME, "device", slug, prop.key, {"serial": ic.device_id}))
            out.extend(Resource(NAME, "dir_user", slug, f"{prop.key}/{tm.key}",
                                _desired_attrs(tm, zone_name(tenant, prop)),
                                remote_id=user_uuid(slug, prop.key, tm.key))
                       for tm in _pin_holders(tenant, prop)
                       if tm.access is not None
                       and not expired(window_of(tm.access, zone_name(tenant, prop)), self._now()))
        return out

    # Observe --------------------------------------------------------------------------------------
    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        live: list[Resource] = []
        for prop, ic in _with_intercom(tenant):
            live.extend(self._observe_device(tenant, ctx, http, prop, ic))
        return live

    def _observe_device(self, tenant: Tenant, ctx: ProviderContext, http: Http, prop: Property,
                        ic: Intercom) -> list[Resource]:
        slug = tenant.slug
        info = self._call(http, tenant, ctx, ic, "GET", "/api/system/info")
        serial = str(info.get("serialNumber", "")) if isinstance(info, Mapping) else ""
        device = Resource(NAME, "device", slug, prop.key, {"serial": serial},
                          remote_id=serial, owned=serial == ic.device_id)
        if serial != ic.device_id:
            return [device]  # another device: its directory is none of our business
        body = {"iterator": {"timestamp": 0}, "fields": list(QUERY_FIELDS)}
        result = self._call(http, tenant, ctx, ic, "POST", "/api/dir/query", json=body)
        users = result.get("users") if isinstance(result, Mapping) else None
        names = {user_uuid(slug, prop.key, tm.key): f"{prop.key}/{tm.key}" for tm in tenant.teammates}
        out = [device]
        for u in users if isinstance(users, list) else []:
            if not isinstance(u, Mapping) or u.get("deleted") is True:
                continue  # the device keeps deleted entries as tombstones for a while
            uid = str(u.get("uuid", "")).upper()
            ours = u.get("owner") == OWNER
            name = names.get(uid) or f"{prop.key}/~{uid}"
            attrs = live_user_attrs(u, zone_name(tenant, prop))
            if not ours:
                attrs["owner"] = u.get("owner")  # kept only to say who made it when it blocks ours
            out.append(Resource(NAME, "dir_user", slug, name, attrs, remote_id=uid, owned=ours))
        return out

    # Plan -----------------------------------------------------------------------------------------
    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        desired = self.desired(tenant, ctx)
        devices = {r.name: r for r in live if r.kind == "device"}
        changes: list[Change] = []
        usable: set[str] = set()
        for d in (r for r in desired if r.kind == "device"):
            lv = devices.get(d.name)
            if lv is None:
                changes.append(report(Severity.ERROR, NAME, "device", d.tenant, d.address, desired=d, note=(
                    f"the intercom of property {d.name} was not observed")))
            elif lv.attrs.get("serial") != d.attrs["serial"]:
                changes.append(report(Severity.ERROR, NAME, "device", d.tenant, d.address, desired=d, live=lv,
                                      note=(f"the host answers as device {lv.attrs.get('serial')!r}, "
                                            f"not {d.attrs['serial']!r}: the host points at another device; "
                                            "fix intercom.host or intercom.device_id")))
            else:
                usable.add(d.name)
                changes.append(Change(Action.NOOP, NAME, "device", d.tenant, d.address, desired=d, live=lv))

        live_users = [r for r in live if r.kind == "dir_user" and r.name.split("/")[0] in usable]
        want_users = []
        by_addr = {r.address: r for r in live_users}
        for d in (r for r in desired if r.kind == "dir_user" and r.name.split("/")[0] in usable):
            lv = by_addr.get(d.address)
            # What the device hid (PIN, switch codes) cannot be compared: left out of the comparison.
            hidden = {k for k in ("pin", "qr") if lv is not None and k not in lv.attrs}
            want_users.append(replace(d, attrs={k: v for k, v in d.attrs.items() if k not in hidden})
                              if hidden else d)
        foreign = {(r.name.split("/")[0], r.attrs.get("pin")): r for r in live_users
                   if not r.owned and r.attrs.get("pin") is not None}
        for c in diff(want_users, live_users):
            if c.action is Action.REPORT and c.desired is None:
                continue  # hand-made users: never touched, not listed
            if c.action in (Action.UPDATE, Action.NOOP) and c.live is not None and not c.live.owned:
                changes.append(replace(c, action=Action.REPORT, fields=(), severity=Severity.ERROR, note=(
                    f"a user with owner {c.live.attrs.get('owner')!r} holds tenantctl's uuid for this "
                    "teammate: remove it on the device, or give it the owner 'tenantctl'")))
                continue
            prop = c.address.split("[", 1)[1].split("/")[1]
            new_pin = c.action is Action.CREATE or any(f.field == "pin" for f in c.fields)
            clash = foreign.get((prop, c.desired.attrs.get("pin"))) \
                if new_pin and c.desired is not None else None
            if clash is not None:
                changes.append(replace(c, action=Action.REPORT, severity=Severity.ERROR, note=(
                    f"the directory user {clash.attrs.get('name')!r} (owner "
                    f"{clash.attrs.get('owner') or 'none'!r}) already uses this PIN on the intercom: change "
                    "one of the two PINs")))
            else:
                changes.append(c)
        changes.extend(_schedule_reports(tenant))
        return sort_changes(changes)

    # Apply ----------------------------------------------------------------------------------------
    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        if change.kind != "dir_user" or change.action not in (Action.CREATE, Action.UPDATE, Action.DELETE):
            raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")
        prop_key = change.address.split("[", 1)[1].split("/")[1]
        prop = tenant.property(prop_key)
        if prop is None or prop.intercom is None:
            raise InvalidRequest(NAME, f"{change.address}: property {prop_key} has no intercom in the file")
        ic = prop.intercom
        if change.action is Action.DELETE:
            uid = change.live.remote_id if change.live is not None else None
            if not uid or change.live is None or not change.live.owned:
                raise InvalidRequest(NAME, f"{change.address}: refusing to delete a user tenantctl does not own")
            try:
                self._call(http, tenant, ctx, ic, "PUT", "/api/dir/delete", json={"users": [{"uuid": uid}]})
            except NotFound:
                return ApplyResult(change, detail=f"directory user {uid} was already gone")
            return ApplyResult(change, detail=f"directory user {uid} deleted from the intercom of {prop_key}")
        d = change.desired
        if d is None or not d.remote_id:
            raise InvalidRequest(NAME, f"{change.address}: a change with no desired user")
        attrs = dict(d.attrs)
        full = next((r for r in self.desired(tenant, ctx) if r.address == d.address), None)
        for key in ("pin", "qr"):  # planned while the device hid it: send the file's
            if key not in attrs and full is not None and key in full.attrs:
                attrs[key] = full.attrs[key]
        op = "create" if change.action is Action.CREATE else "update"
        body = {"users": [user_body(d.remote_id, attrs)]}
        try:
            result = self._call(http, tenant, ctx, ic, "PUT", f"/api/dir/{op}", json=body)
        except (InvalidRequest, NotFound) as err:
            # Our uuid is stable, so a create that finds the entry (a retried write whose first answer was
            # lost) becomes an update, and an update that finds none a create: every write is a "set".
            if not (op == "create" and _is_param(err, "users[0].uuid")) and not \
                    (op == "update" and isinstance(err, NotFound)):
                raise
            op = "update" if op == "create" else "create"
            result = self._call(http, tenant, ctx, ic, "PUT", f"/api/dir/{op}", json=body)
        done = result.get("users") if isinstance(result, Mapping) else None
        if not isinstance(done, list) or not any(isinstance(u, Mapping) and str(u.get("uuid", "")).upper()
                                                 == d.remote_id for u in done):
            raise PermanentError(NAME, f"{change.address}: the device did not confirm the {op} of {d.remote_id}")
        return ApplyResult(change, detail=f"directory user {d.remote_id} {op}d on the intercom of {prop_key}")

    def revokes_access(self, change: Change) -> bool:
        """A managed directory user being deleted: a person no longer allowed in. It runs first."""
        return change.kind == "dir_user" and change.action is Action.DELETE

    # Health ---------------------------------------------------------------------------------------
    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        slug = tenant.slug
        checks: list[HealthCheck] = []
        for prop, ic in _with_intercom(tenant):
            where = f"twon.device[{slug}/{prop.key}]"
            try:
                live = self._observe_device(tenant, ctx, http, prop, ic)
            except ProviderError as err:
                checks.append(replace(error_check(NAME, slug, where, err),
                                      detail=f"the intercom does not answer: {err}"))
                continue
            serial = live[0].attrs.get("serial")
            if serial != ic.device_id:
                checks.append(HealthCheck(NAME, slug, where, False, (
                    f"the host answers as device {serial!r}, not {ic.device_id!r}"), Health.DEGRADED,
                    hint="the intercom's host in the tenant file points at another device: correct it"))
                continue
            checks.append(HealthCheck(NAME, slug, where, True, f"answers; serial {serial} matches"))
            users = [c for c in self.plan(tenant, ctx, live) if c.kind == "dir_user"
                     and c.address.startswith(f"twon.dir_user[{slug}/{prop.key}/")]
            ok = [c for c in users if c.action is Action.NOOP]
            wanted = [c for c in users if c.desired is not None]
            in_sync = len(ok) == len(users)
            checks.append(HealthCheck(NAME, slug, f"twon.dir_users[{slug}/{prop.key}]", in_sync,
                                      f"{len(ok)}/{len(wanted)} managed users in sync" + (
                                          "" if in_sync else f"; {len(users) - len(ok)} pending"),
                                      Health.HEALTHY if in_sync else Health.DEGRADED,
                                      Sync.IN_SYNC if in_sync else Sync.OUT_OF_SYNC,
                                      "" if in_sync else "run `tenantctl plan` to review, then `tenantctl apply`"))
        return checks

    # HTTP -----------------------------------------------------------------------------------------
    def _auth(self, base: str, ic: Intercom) -> httpx.DigestAuth:
        password = ic.password.get_secret_value()
        key = (base, ic.username, hashlib.sha256(password.encode()).hexdigest())
        with self._auths_lock:
            auth = self._auths.get(key)
            if auth is None:
                auth = self._auths[key] = httpx.DigestAuth(ic.username, password)
            return auth

    def _call(self, http: Http, tenant: Tenant, ctx: ProviderContext, ic: Intercom, method: str, path: str, *,
              json: Any = None) -> Any:
        """One device call → its `result`; `success: false` (HTTP 200) becomes the mapped error."""
        base = device_base(ctx, ic)
        secrets = [ic.password.get_secret_value(), *_pins(tenant)]
        resp = http.request(NAME, method, base + path, json=json, auth=self._auth(base, ic), secrets=secrets,
                            tenant=tenant.slug)
        if resp.status_code == 401:
            raise AuthError(NAME, f"{method} {path}: the intercom refused the username or password",
                            status=401)
        if resp.status_code >= 400:  # a client that hands error responses back instead of raising
            raise PermanentError(NAME, f"{method} {path}: 2N API error", status=resp.status_code)
        try:
            body = resp.json()
        except ValueError:
            raise PermanentError(NAME, f"{method} {path}: the intercom answered no JSON",
                                 status=resp.status_code) from None
        if not isinstance(body, Mapping):
            raise PermanentError(NAME, f"{method} {path}: unexpected answer", status=resp.status_code)
        if body.get("success") is not True:
            raise device_error(f"{method} {path}", body.get("error"), secrets)
        return body.get("result")


def device_base(ctx: ProviderContext, ic: Intercom) -> str:
    return ctx.base_urls[NAME].format(host=ic.host, device_id=quote(ic.device_id, safe="")).rstrip("/")


def device_error(where: str, error: Any, secrets: Sequence[str] = ()) -> ProviderError:
    """`{"success": false, "error": {code, param, description}}` → the reconciler error for its code."""
    err = error if isinstance(error, Mapping) else {}
    code = err.get("code")
    cls = _ERRORS.get(code, PermanentError) if isinstance(code, int) else PermanentError
    text = f"{where}: {err.get('description') or 'the intercom refused the request'}"
    if err.get("param"):
        text += f" (parameter {err['param']})"
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, _MASK)
    return cls(NAME, text, code=code if isinstance(code, int | str) else None)


def _is_param(err: ProviderError, param: str) -> bool:
    return isinstance(err, InvalidRequest) and f"(parameter {param})" in err.message


def _schedule_reports(tenant: Tenant) -> list[Change]:
    out = []
    covered = {p.key for p, _ in _with_intercom(tenant)}
    for tm in tenant.teammates:
        access = tm.access
        if access is None or (access.intercom_pin is None and access.intercom_qr is None) \
                or not covered & set(tm.properties):
            continue
        if set(access.weekdays) == set(Weekday) and access.from_time is None:
            continue
        out.append(report(Severity.INFO, NAME, "schedule", tenant.slug, f"twon.schedule[{tenant.slug}/{tm.key}]",
                          note=("the intercom does not enforce weekdays or daily hours for directory users "
                                "here: the PIN opens any day and hour between valid_from and valid_until")))
    return out
