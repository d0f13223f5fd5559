"""Nuki Web API: the tenant's locks exist, teammates' keypad codes match the file, the webhook is ours.

Resources
- `nuki.lock[slug/<lock-id>]`: every lock the file lists is on the account (missing: REPORT error); a
  lock on the account that no property lists is a REPORT (info).
- `nuki.keypad_code[slug/<lock-id>/<teammate-key>]`: the teammate's `access.keypad_code` on every lock of
  every property they may enter, with its windows. Ours are marked by the name prefix `tc:` (the rest of
  the name is the teammate's name, so the lock's activity log stays readable); codes without it were made
  by hand and are never touched (and not listed, except when one blocks ours by using the same code).
  A managed code that is no longer declared on a declared lock is deleted; codes on locks no property
  lists are left alone (two tenants could share an account). The code itself is compared as Sensitive;
  when the API does not return it, it cannot be compared and is left out.
- `nuki.decentral_webhook[slug]`: a decentral webhook to the tenant's Nuki URL. Nuki returns its secret
  only at creation, so the CREATE's apply returns it as `write_back[("nuki", "webhook_secret")]`. Nuki
  cannot update a webhook: one that differs, or that exists while the file holds no secret for it, is
  replaced (create the new one first, then delete the old one: no gap).

Maintenance codes (`tenantctl access maintenance`): ours too, named `tc:mnt:<name>`, issued on a
property's locks with an `allowedUntilDate`; never declared in the file. Until then a plan lists them as
REPORT info; once expired, as a DELETE, so the next apply removes them.

Live auths are matched to teammates per lock: first by code (codes are unique per lock), then by our
name (a rotated code becomes an UPDATE), anything else ours is an orphan (DELETE).

Writes answer 204 and reach the lock later: apply reads back (bounded backoff) until the lock shows the
change. Updates send the whole object (a partial update clears the time windows).

Dates and times are local time in the property's zone (tenancy.access_time): `valid_from` →
`allowedFromDate` at the first instant of that local day, `valid_until` → `allowedUntilDate` at its last
second, both as UTC instants (Nuki stores UTC); the plan shows them as local labels with the zone. Times
are minutes from midnight, applied by the lock in its own zone; no window is 0-0. Weekdays map to the
bitmask Mon=64 … Sun=1 (spec: SmartlockAuth.allowedWeekDays).

Calls (per tenant): a no-op plan makes 3 GETs (smartlocks, all keypad auths of the account, webhooks);
each code write is 1 write + ≥1 read-back GET of that lock's auths.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.diff import adoption, diff, sort_changes
from reconciler.errors import AnswerLost, InvalidRequest, OutcomeUnknown, PermanentError, ProviderError
from reconciler.health_status import Health
from reconciler.model import Action, Change, Resource, Sensitive, Severity, report
from reconciler.providers.base import (
    ApplyResult,
    HealthCheck,
    Http,
    ProviderContext,
    check,
    default_check,
    error_check,
    plan_health,
)
from tenancy.access_time import (
    DEFAULT_ZONE,
    NUKI_DATE,
    date_labels,
    expired,
    nuki_date,
    nuki_label,
    parse_label,
    window_of,
    zone_name,
)
from tenancy.model import Access, Tenant, Weekday
from tenancy.urls import tenant_webhook_url

NAME = "nuki"
KEYPAD = 13
MARKER = "tc:"
MAINTENANCE = "tc:mnt:"  # a temporary code `tenantctl access maintenance` issued
NAME_MAX = 32
WEBHOOK_FEATURES = ("DEVICE_AUTHS", "DEVICE_LOGS", "DEVICE_STATUS")
READBACK_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before each read-back after the first
WEBHOOK_CREATE_ATTEMPTS = 5
LOCKED = 423  # Nuki: another operation on this authorisation is in progress

# Spec: 64 .. monday, 32 .. tuesday, ..., 1 .. sunday.
WEEKDAY_BITS = {Weekday.MON: 64, Weekday.TUE: 32, Weekday.WED: 16, Weekday.THU: 8, Weekday.FRI: 4,
                Weekday.SAT: 2, Weekday.SUN: 1}


def weekdays_to_mask(days: Sequence[Weekday | str]) -> int:
    return sum(WEEKDAY_BITS[Weekday(d)] for d in set(days))


def mask_to_weekdays(mask: int) -> list[str]:
    return [d.value for d in Weekday if mask & WEEKDAY_BITS[d]]


def minutes_to_hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def hhmm_to_minutes(text: str) -> int:
    """"08:00" or "08:00 Europe/Bratislava" (the lock's zone, shown in plans) → 480."""
    hours, mins = text.split(maxsplit=1)[0].split(":")[:2]
    return int(hours) * 60 + int(mins)


def auth_name(teammate_name: str) -> str:
    return (MARKER + teammate_name)[:NAME_MAX]


def live_code_attrs(auth: Mapping[str, Any], zone_id: str = DEFAULT_ZONE) -> dict[str, Any]:
    """A keypad auth as Nuki returns it → the attributes we compare (same shape as the desired side).

    Its UTC dates are shown in `zone_id`, the zone of the lock's property.
    """
    start, end = int(auth.get("allowedFromTime") or 0), int(auth.get("allowedUntilTime") or 0)
    window = start != 0 or end != 0
    attrs: dict[str, Any] = {
        "name": auth.get("name"),
        "weekdays": mask_to_weekdays(int(auth.get("allowedWeekDays", 127))),
        "from_time": f"{minutes_to_hhmm(start)} {zone_id}" if window else None,
        "until_time": f"{minutes_to_hhmm(end)} {zone_id}" if window else None,
        "valid_from": nuki_label(auth.get("allowedFromDate"), zone_id),
        "valid_until": nuki_label(auth.get("allowedUntilDate"), zone_id),
        "enabled": bool(auth.get("enabled", True)),
        "remote_allowed": bool(auth.get("remoteAllowed", False)),
    }
    if auth.get("code") is not None:
        attrs["code"] = Sensitive(str(auth["code"]))
    return attrs


def auth_body(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Compared attributes → the whole object Nuki expects (create and update alike)."""
    body: dict[str, Any] = {
        "name": attrs["name"],
        "allowedWeekDays": weekdays_to_mask(attrs["weekdays"]),
        "allowedFromTime": hhmm_to_minutes(attrs["from_time"]) if attrs.get("from_time") else 0,
        "allowedUntilTime": hhmm_to_minutes(attrs["until_time"]) if attrs.get("until_time") else 0,
        "enabled": bool(attrs.get("enabled", True)),
        "remoteAllowed": bool(attrs.get("remote_allowed", False)),
    }
    if attrs.get("valid_from"):
        body["allowedFromDate"] = nuki_date(attrs["valid_from"])
    if attrs.get("valid_until"):
        body["allowedUntilDate"] = nuki_date(attrs["valid_until"])
    code = attrs.get("code")
    if isinstance(code, Sensitive):
        body["code"] = int(code.reveal())
    return body


def code_attrs(name: str, code: str, access: Access, zone_id: str) -> dict[str, Any]:
    """A keypad code with its window in local time of `zone_id` → the attributes we compare."""
    valid_from, valid_until = date_labels(window_of(access, zone_id))
    return {
        "name": name,
        "code": Sensitive(code),
        "weekdays": mask_to_weekdays(weekdays_to_mask(access.weekdays)),
        # Times of day apply in the lock's own zone: shown with it so the plan reads as local time.
        "from_time": f"{access.from_time:%H:%M} {zone_id}" if access.from_time else None,
        "until_time": f"{access.until_time:%H:%M} {zone_id}" if access.until_time else None,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "enabled": True,
        "remote_allowed": False,
    }


def _attrs_zone(attrs: Mapping[str, Any]) -> str:
    """The zone named by a desired resource's date labels (UTC when it has none)."""
    for key in ("valid_from", "valid_until"):
        value = attrs.get(key)
        if isinstance(value, str) and value.endswith("]") and "[" in value:
            return value.rsplit("[", 1)[1][:-1]
    hours = attrs.get("from_time")
    return hours.split()[1] if isinstance(hours, str) and " " in hours else DEFAULT_ZONE


class NukiProvider:
    name = NAME

    def __init__(self, readback_delays: Sequence[float] = READBACK_DELAYS,
                 sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.readback_delays = tuple(readback_delays)
        self._sleep = sleep
        self._now = now  # only to tell expired maintenance codes apart

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.nuki is not None

    # Desired --------------------------------------------------------------------------------------
    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        slug = tenant.slug
        out: list[Resource] = []
        for prop in tenant.properties:
            out.extend(Resource(NAME, "lock", slug, str(lock), {"property": prop.key})
                       for lock in prop.nuki_lock_ids)
        seen: set[str] = set()
        for tm in tenant.teammates:
            access = tm.access
            if access is None or access.keypad_code is None:
                continue
            for key in tm.properties:
                found = tenant.property(key)
                if expired(window_of(access, zone_name(tenant, found)), self._now()):
                    continue  # valid_until has passed there: offboarded, the code is removed
                attrs = code_attrs(auth_name(tm.name), access.keypad_code.get_secret_value(), access,
                                   zone_name(tenant, found))
                for lock in found.nuki_lock_ids if found else []:
                    name = f"{lock}/{tm.key}"
                    if name not in seen:
                        seen.add(name)
                        out.append(Resource(NAME, "keypad_code", slug, name, attrs))
        out.append(Resource(NAME, "decentral_webhook", slug, "", {
            "url": _url(tenant, ctx), "features": list(WEBHOOK_FEATURES)}))
        return out

    # Observe --------------------------------------------------------------------------------------
    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        slug = tenant.slug
        token = _token(tenant)
        base = _base(ctx)
        want = self.desired(tenant, ctx)
        declared = {int(r.name) for r in want if r.kind == "lock"}
        live: list[Resource] = []
        for lock in _list(self._call(http, "GET", f"{base}/smartlock", token)):
            lid = int(lock["smartlockId"])
            live.append(Resource(NAME, "lock", slug, str(lid), {"name": lock.get("name")},
                                 remote_id=str(lid), owned=lid in declared))
        auths = _list(self._call(http, "GET", f"{base}/smartlock/auth", token, params={"types": KEYPAD}))
        wanted_codes = [r for r in want if r.kind == "keypad_code"]
        zones = {lock: zone_name(tenant, p) for p in tenant.properties for lock in p.nuki_lock_ids}
        for lid in sorted(declared):
            on_lock = [a for a in auths if int(a.get("smartlockId", -1)) == lid and a.get("type") == KEYPAD]
            live.extend(_match_codes(slug, lid, on_lock, [r for r in wanted_codes
                                                          if r.name.split("/")[0] == str(lid)],
                                     zones.get(lid, DEFAULT_ZONE)))
        hooks = _list(self._call(http, "GET", f"{base}/api/decentralWebhook", token))
        live.extend(_webhooks(slug, hooks, _url(tenant, ctx)))
        return live

    # Plan -----------------------------------------------------------------------------------------
    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        if tenant.nuki is None:
            return []
        desired = self.desired(tenant, ctx)
        live_locks = {r.name: r for r in live if r.kind == "lock"}
        changes: list[Change] = []
        for d in (r for r in desired if r.kind == "lock"):
            lv = live_locks.get(d.name)
            if lv is None:
                changes.append(report(Severity.ERROR, NAME, "lock", d.tenant, d.address, desired=d, note=(
                    f"lock {d.name} (property {d.attrs['property']}) is not on the tenant's Nuki "
                    "account: check the ID, or share the lock with this account")))
            else:
                changes.append(Change(Action.NOOP, NAME, "lock", d.tenant, d.address, desired=d, live=lv))
        changes.extend(report(Severity.INFO, NAME, "lock", lv.tenant, lv.address, live=lv,
                              note="a lock on the account that no property lists")
                       for lv in live_locks.values() if not lv.owned)

        live_codes = [r for r in live if r.kind == "keypad_code"]
        by_addr = {r.address: r for r in live_codes}
        want_codes = []
        for d in (r for r in desired if r.kind == "keypad_code"):
            if d.name.split("/")[0] not in live_locks:
                continue  # the lock's REPORT says why
            lv = by_addr.get(d.address)
            hidden = lv is not None and "code" not in lv.attrs  # the API hid the code: cannot compare it
            want_codes.append(replace(d, attrs={k: v for k, v in d.attrs.items() if k != "code"})
                              if hidden else d)
        foreign = {(r.name.split("/")[0], r.attrs.get("code")): r for r in live_codes if not r.owned}
        for c in diff(want_codes, live_codes):
            if c.action is Action.REPORT:
                continue  # hand-made codes: never touched, not listed
            if c.action is Action.DELETE and c.live is not None and is_maintenance(c.live):
                changes.append(maintenance_change(c, self._now()))
                continue
            clash = foreign.get((c.desired.name.split("/")[0], c.desired.attrs.get("code"))) \
                if c.action is Action.CREATE and c.desired is not None else None
            if clash is not None and c.desired is not None and clash.address in ctx.adopt:
                changes.append(adoption(c.desired, clash, (
                    f"adoption: takes over the hand-made authorisation {clash.attrs.get('name')!r} "
                    f"({clash.address}), which has the declared code, and renames it to "
                    f"{c.desired.attrs.get('name')!r}: tenantctl manages it from now on")))
            elif clash is not None:
                changes.append(replace(c, action=Action.REPORT, severity=Severity.ERROR, note=(
                    f"a hand-made authorisation {clash.attrs.get('name')!r} already uses this code on "
                    "the lock: change one of the two codes")))
            else:
                changes.append(c)

        hooks = [r for r in live if r.kind == "decentral_webhook"]
        want_hook = next(r for r in desired if r.kind == "decentral_webhook")
        current = next((r for r in hooks if r.address == want_hook.address), None)
        if current is not None and (tenant.nuki.webhook_secret is None or current.attrs != want_hook.attrs):
            # Nuki has no update and shows the secret only at creation: replace it.
            hooks = [replace(r, name=f"#{r.remote_id}") if r is current else r for r in hooks]
        notes = {Action.CREATE: "the webhook's secret will be stored encrypted (provider state store)",
                 Action.DELETE: "replaced or stale webhook of ours (its secret is not known to us, or "
                                "its URL or features differ)"}
        pruned = "a webhook tenantctl did not make (another integration's?): deleted because of --prune"
        # Only webhooks are pruned: hand-made keypad codes are people's access, never ours to remove.
        unpruned = "a webhook tenantctl did not make: left untouched (plan/apply --prune deletes it)"
        changes.extend(replace(c, note=pruned) if c.action is Action.DELETE and c.live and not c.live.owned
                       else replace(c, note=unpruned) if c.action is Action.REPORT
                       else replace(c, note=notes[c.action]) if c.action in notes else c
                       for c in diff([want_hook], hooks, prune=ctx.prune))
        return sort_changes(changes)

    # Apply ----------------------------------------------------------------------------------------
    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        token = _token(tenant)
        base = _base(ctx)
        if change.kind == "keypad_code":
            return self._apply_code(change, http, base, token)
        if change.kind == "decentral_webhook":
            return self._apply_webhook(change, http, base, token)
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    def _apply_code(self, change: Change, http: Http, base: str, token: str) -> ApplyResult:
        lock = (change.desired or change.live or _missing(change)).name.split("/")[0]
        auths_url = f"{base}/smartlock/{lock}/auth"
        done = _code_done(change)
        if change.action is Action.CREATE and change.desired is not None:
            body = {**auth_body(change.desired.attrs), "type": KEYPAD}
            body.pop("enabled", None)  # not part of the create object
            self._call(http, "PUT", auths_url, token, json=body, extra=_code_secret(change.desired))
            self._confirm(http, auths_url, token, done, change)
            return ApplyResult(change, detail=f"keypad code created on lock {lock}")
        if change.action is Action.UPDATE and change.desired is not None and change.live is not None:
            self._call(http, "POST", f"{auths_url}/{change.live.remote_id}", token,
                       json=auth_body(_update_attrs(change)), extra=_code_secret(change.desired))
            self._confirm(http, auths_url, token, done, change)
            return ApplyResult(change, detail=f"keypad code updated on lock {lock}")
        if change.action is Action.DELETE and change.live is not None:
            try:
                self._call(http, "DELETE", f"{auths_url}/{change.live.remote_id}", token)
            except ProviderError as e:
                # A DELETE is retried after a lost answer: the retry may find the first one pending (423,
                # "another operation is in progress") or done (404). Either way, read back.
                if e.status not in (404, LOCKED):
                    raise
            self._confirm(http, auths_url, token, done, change)
            return ApplyResult(change, detail=f"keypad code deleted from lock {lock}")
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    def _apply_webhook(self, change: Change, http: Http, base: str, token: str) -> ApplyResult:
        hooks_url = f"{base}/api/decentralWebhook"
        if change.action is Action.CREATE and change.desired is not None:
            attrs = change.desired.attrs
            # Nuki shows a webhook's secret only in the creation's answer: a created webhook whose answer
            # was lost is useless (we cannot verify its events). Know what existed before, so such an
            # orphan can be told from the webhook being replaced, deleted, and the creation sent again.
            before = {h.get("id") for h in _list(self._call(http, "GET", hooks_url, token))}
            for _ in range(WEBHOOK_CREATE_ATTEMPTS):
                try:
                    made = self._call(http, "PUT", hooks_url, token, json={
                        "webhookUrl": attrs["url"], "webhookFeatures": list(attrs["features"])})
                except AnswerLost:
                    self._drop_orphans(http, hooks_url, token, before, str(attrs["url"]))
                    continue
                return self._created(http, hooks_url, token, change, made)
            raise PermanentError(NAME, f"{change.address}: not created: the answer to each of "
                                 f"{WEBHOOK_CREATE_ATTEMPTS} creations was lost (any webhook they made was "
                                 "deleted again); run apply again")
        if change.action is Action.DELETE and change.live is not None:
            self._call(http, "DELETE", f"{hooks_url}/{change.live.remote_id}", token)
            return ApplyResult(change, detail=f"decentral webhook {change.live.remote_id} deleted")
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    def _created(self, http: Http, hooks_url: str, token: str, change: Change, made: Any) -> ApplyResult:
        assert change.desired is not None  # noqa: S101  (only CREATE comes here)
        secret = made.get("secret") if isinstance(made, Mapping) else None
        hook_id = made.get("id") if isinstance(made, Mapping) else None
        if not isinstance(secret, str) or not secret:
            raise PermanentError(NAME, "the webhook was created but Nuki returned no secret")
        try:
            seen = _list(self._call(http, "GET", hooks_url, token, extra=secret))
        except ProviderError as e:  # created, answered, secret in hand: only the confirmation is missing
            return ApplyResult(change, write_back={("nuki", "webhook_secret"): secret},
                               detail=f"webhook {hook_id} created (not read back: {e})")
        if not any(h.get("id") == hook_id and h.get("webhookUrl") == change.desired.attrs["url"] for h in seen):
            raise PermanentError(NAME, f"webhook {hook_id} does not show after creation")
        return ApplyResult(change, write_back={("nuki", "webhook_secret"): secret},
                           detail=f"webhook {hook_id} created; its secret is stored encrypted")

    def _drop_orphans(self, http: Http, hooks_url: str, token: str, before: set[Any], url: str) -> None:
        try:
            hooks = _list(self._call(http, "GET", hooks_url, token))
            for h in hooks:
                if h.get("id") not in before and h.get("webhookUrl") == url:
                    self._call(http, "DELETE", f"{hooks_url}/{h.get('id')}", token)
        except ProviderError as e:
            raise OutcomeUnknown(
                f"a webhook creation's answer (and so its secret) was lost, and cleaning up failed: {e}",
                "the tenant's decentral webhooks in Nuki Web: delete one to this tenant's URL that is not in "
                "the tenant file, or run `tenantctl plan` (it plans its replacement)") from e

    # Read-back and dependencies (the engine calls these) ---------------------------------------------
    def read_back(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> bool | None:
        """Whether a write whose answer was lost is in effect: reads the one lock's keypad auths (with the
        usual wait, as Nuki applies writes later) or the webhook list. None when reading fails."""
        token = _token(tenant)
        base = _base(ctx)
        try:
            if change.kind == "keypad_code":
                lock = (change.desired or change.live or _missing(change)).name.split("/")[0]
                return self._await(http, f"{base}/smartlock/{lock}/auth", token, _code_done(change))
            if change.kind == "decentral_webhook" and change.action is Action.DELETE and change.live:
                hooks = _list(self._call(http, "GET", f"{base}/api/decentralWebhook", token))
                return all(str(h.get("id")) != change.live.remote_id for h in hooks)
        except ProviderError:
            return None
        return None

    def depends_on(self, change: Change, earlier: Change) -> bool:
        """Deleting a replaced webhook waits for its successor (no gap); codes depend on nothing else."""
        return (change.kind == earlier.kind == "decentral_webhook" and change.action is Action.DELETE
                and earlier.action is Action.CREATE)

    def revokes_access(self, change: Change) -> bool:
        """A managed keypad code being deleted: a person no longer allowed in. It runs first."""
        return change.kind == "keypad_code" and change.action is Action.DELETE

    def _confirm(self, http: Http, url: str, token: str, done: Callable[[list[dict[str, Any]]], bool],
                 change: Change) -> None:
        """After an answered write: wait until the lock shows it, else say the outcome is unknown."""
        try:
            shown = self._await(http, url, token, done)
        except ProviderError as e:
            raise OutcomeUnknown(f"{change.address}: Nuki accepted the {change.action.value}, but reading the "
                                 f"lock back failed: {e}", _lock_hint(change)) from e
        if not shown:
            raise OutcomeUnknown(f"{change.address}: Nuki accepted the {change.action.value}, but the lock did "
                                 f"not show it after {sum(self.readback_delays):.1f} s (it may still be pending)",
                                 _lock_hint(change))

    def _await(self, http: Http, url: str, token: str, done: Callable[[list[dict[str, Any]]], bool]) -> bool:
        """Read back until the lock shows the write (Nuki applies it asynchronously), bounded."""
        for delay in (0.0, *self.readback_delays):
            if delay:
                self._sleep(delay)
            auths = [a for a in _list(self._call(http, "GET", url, token, params={"types": KEYPAD}))
                     if a.get("type") == KEYPAD]
            if done(auths):
                return True
        return False

    # Maintenance codes ----------------------------------------------------------------------------
    def live_codes(self, tenant: Tenant, ctx: ProviderContext, http: Http, lock: int) -> set[str]:
        """Every keypad code on the lock that the API shows (ours and hand-made): a new code must differ."""
        url = f"{_base(ctx)}/smartlock/{lock}/auth"
        return {str(a["code"]) for a in _list(self._call(http, "GET", url, _token(tenant), params={"types": KEYPAD}))
                if a.get("type") == KEYPAD and a.get("code") is not None}

    def issue_maintenance_code(self, tenant: Tenant, ctx: ProviderContext, http: Http, lock: int, name: str,
                               code: str, until: datetime) -> None:
        """Create `tc:mnt:<name>` with `code` on `lock`, valid from now until `until`; read back until shown.

        Raises PermanentError when the lock does not show it in time (it may still be pending).
        """
        token = _token(tenant)
        url = f"{_base(ctx)}/smartlock/{lock}/auth"
        attrs = {"name": (MAINTENANCE + name)[:NAME_MAX], "code": Sensitive(code), "weekdays": list(WEEKDAY_BITS),
                 "from_time": None, "until_time": None, "enabled": True, "remote_allowed": False}
        body = {**auth_body(attrs), "type": KEYPAD, "allowedFromDate": self._now().strftime(NUKI_DATE),
                "allowedUntilDate": until.astimezone(UTC).strftime(NUKI_DATE)}
        body.pop("enabled", None)  # not part of the create object
        self._call(http, "PUT", url, token, json=body, extra=code)
        shown = self._await(http, url, token, lambda auths: any(a.get("name") == attrs["name"] and
                                                                str(a.get("code")) == code for a in auths))
        if not shown:
            raise PermanentError(NAME, f"lock {lock} does not show the maintenance code {attrs['name']!r} yet: "
                                 "it may still be pending on the lock; check the Nuki app before issuing another")

    # Health ---------------------------------------------------------------------------------------
    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """The plan's rows, plus each lock's active keypad codes listed within `ctx.slow_s` (measured; the
        seed: "within a second or two"): `nuki.keypad_codes[slug/<lock>]`, one GET per lock."""
        checks = plan_health(self, tenant, ctx, http, "the API token lists the account's locks", _health_verdict)
        if not any(c.name == f"{NAME}.token[{tenant.slug}]" and c.ok for c in checks):
            return checks  # the token row says why; listing would fail the same way
        token, base = _token(tenant), _base(ctx)
        for lock in sorted({int(r.name) for r in self.desired(tenant, ctx) if r.kind == "lock"}):
            checks.append(self._listing_check(http, tenant.slug, base, token, lock, ctx.slow_s))
        return checks

    def _listing_check(self, http: Http, slug: str, base: str, token: str, lock: int, slow_s: float) -> HealthCheck:
        address = f"{NAME}.keypad_codes[{slug}/{lock}]"
        started = time.monotonic()
        try:
            auths = _list(self._call(http, "GET", f"{base}/smartlock/{lock}/auth", token, params={"types": KEYPAD}))
        except ProviderError as err:
            return error_check(NAME, slug, address, err, time.monotonic() - started)
        took = time.monotonic() - started
        active = sum(1 for a in auths if a.get("type") == KEYPAD and a.get("enabled", True))
        detail = f"{active} active keypad code(s) listed in {took:.2f} s"
        if took > slow_s:
            return check(NAME, slug, address, Health.DEGRADED, f"{detail}, slower than {slow_s:g} s",
                         "the lock's bridge or Nuki's servers answer slowly: check the lock's Wi-Fi/bridge "
                         "connection in the Nuki app; codes issued now may reach the lock late", duration_s=took)
        return check(NAME, slug, address, Health.HEALTHY, detail, duration_s=took)

    def round_trip(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """`--active`: issue a temporary maintenance keypad code (valid for one hour, name `tc:health check`)
        on the tenant's first lock, wait until the lock lists it, delete it, wait until it is gone.

        Leaves nothing behind: whatever step fails, every code of that name on the lock is deleted at the
        end (a create whose answer was lost included). The code itself is random, never shown, and passed
        to the HTTP client as a secret. Row: `nuki.maintenance_code[slug/<lock>]` with the three times."""
        locks = sorted({int(r.name) for r in self.desired(tenant, ctx) if r.kind == "lock"})
        if not locks:
            return []
        slug, lock, token, base = tenant.slug, locks[0], _token(tenant), _base(ctx)
        address = f"{NAME}.maintenance_code[{slug}/{lock}]"
        url = f"{base}/smartlock/{lock}/auth"
        code = _maintenance_code()
        now = datetime.now(UTC)
        body = {"name": ROUND_TRIP_NAME, "type": KEYPAD, "code": code, "remoteAllowed": False,
                "allowedFromDate": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "allowedUntilDate": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "allowedWeekDays": 127, "allowedFromTime": 0, "allowedUntilTime": 0}
        times: list[str] = []
        step, started = "issue", time.monotonic()
        try:
            self._call(http, "PUT", url, token, json=body, extra=str(code))
            times.append(f"issued in {time.monotonic() - started:.2f} s")
            step, t = "list", time.monotonic()
            auths = self._poll(http, url, token, lambda auths: [a for a in auths if a.get("name") == ROUND_TRIP_NAME])
            times.append(f"listed after {time.monotonic() - t:.2f} s")
            step, t = "delete", time.monotonic()
            for a in auths:
                self._call(http, "DELETE", f"{url}/{a['id']}", token)
            self._poll(http, url, token, lambda auths: [True] if not any(
                a.get("name") == ROUND_TRIP_NAME for a in auths) else [])
            times.append(f"deleted after {time.monotonic() - t:.2f} s")
        except Exception as err:  # whatever failed, clean up first
            left = self._clean_up(http, url, token)
            row = error_check(NAME, slug, address, err, time.monotonic() - started)
            return [replace(row, detail=f"the {step} step failed: {row.detail}" + (
                "; " + "; ".join(times) if times else "") + f"; clean-up: {left}")]
        return [check(NAME, slug, address, Health.HEALTHY, "maintenance code " + ", ".join(times),
                      duration_s=time.monotonic() - started)]

    def _poll(self, http: Http, url: str, token: str,
              found: Callable[[list[dict[str, Any]]], list[Any]]) -> list[Any]:
        for delay in (0.0, *self.readback_delays):
            if delay:
                self._sleep(delay)
            hits = found(_list(self._call(http, "GET", url, token, params={"types": KEYPAD})))
            if hits:
                return hits
        raise PermanentError(NAME, f"the lock did not show the change after {sum(self.readback_delays):.1f} s")

    def _clean_up(self, http: Http, url: str, token: str) -> str:
        """Delete every round-trip code on the lock; say whether any is left."""
        asked: set[str] = set()  # a delete reaches the lock later: ask once per code, then watch
        try:
            for delay in (0.0, *self.readback_delays):
                if delay:
                    self._sleep(delay)
                ours = [a for a in _list(self._call(http, "GET", url, token, params={"types": KEYPAD}))
                        if a.get("name") == ROUND_TRIP_NAME]
                if not ours:
                    return "nothing left on the lock"
                for a in ours:
                    if str(a["id"]) not in asked:
                        self._call(http, "DELETE", f"{url}/{a['id']}", token)
                        asked.add(str(a["id"]))
        except ProviderError as err:
            return f"could not verify ({err}): delete the code named {ROUND_TRIP_NAME!r} in the Nuki app"
        return (f"a code named {ROUND_TRIP_NAME!r} may remain: delete it in the Nuki app (or run `tenantctl apply`: "
                "a managed code no teammate declares is deleted)")

    # HTTP -----------------------------------------------------------------------------------------
    # Every call follows an operation of specs/nuki-web-api-4.4.1.swagger.json (docs/provider-calls.md).
    # NOT IN THE SPEC: the spec declares only OAuth2 (implicit flow); the account's API token from Nuki Web
    # (Menu > API) is sent as `Authorization: Bearer <token>`, per Nuki's developer portal
    # (https://developer.nuki.io/t/swagger-interface/53, Nuki Web API).
    def _call(self, http: Http, method: str, url: str, token: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, extra: str = "") -> Any:
        resp = http.request(NAME, method, url, headers={"Authorization": f"Bearer {token}"}, params=params,
                            json=json, secrets=[token, extra] if extra else [token])
        if resp.status_code >= 400:  # a client that hands error responses back instead of raising
            raise PermanentError(NAME, "Nuki API error", status=resp.status_code)
        return resp.json() if resp.content else None


ROUND_TRIP_NAME = MARKER + "health check"


def _maintenance_code() -> int:
    """Six digits from 1-9, not starting with 12 (Nuki's rules for keypad codes)."""
    while True:
        text = "".join(str(1 + secrets.randbelow(9)) for _ in range(6))
        if not text.startswith("12"):
            return int(text)


def is_maintenance(r: Resource) -> bool:
    return str(r.attrs.get("name") or "").startswith(MAINTENANCE)


def maintenance_change(c: Change, now: datetime) -> Change:
    """A maintenance code no teammate declares: kept (REPORT info) until it expires, then deleted."""
    assert c.live is not None  # noqa: S101  (callers pass deletions of live codes)
    until = c.live.attrs.get("valid_until")
    try:
        expired = until is None or parse_label(str(until)) <= now
    except ValueError:
        expired = True
    if expired:
        return replace(c, note=f"maintenance code {c.live.attrs.get('name')!r} expired "
                               f"({until or 'no end date'}): removed")
    return replace(c, action=Action.REPORT, fields=(),
                   note=f"info: maintenance code {c.live.attrs.get('name')!r} valid until {until}; the first "
                        "apply after that removes it")


def _token(tenant: Tenant) -> str:
    if tenant.nuki is None:
        raise InvalidRequest(NAME, f"tenant {tenant.slug} has no nuki section")
    return tenant.nuki.api_token.get_secret_value()


def _url(tenant: Tenant, ctx: ProviderContext) -> str:
    return tenant_webhook_url("nuki", tenant, ctx.domain)


def _base(ctx: ProviderContext) -> str:
    return ctx.base_urls[NAME].rstrip("/")


def _list(body: Any) -> list[dict[str, Any]]:
    return [dict(x) for x in body if isinstance(x, Mapping)] if isinstance(body, list) else []


def _missing(change: Change) -> Resource:
    raise InvalidRequest(NAME, f"{change.address}: a change with no resource")


def _code_secret(r: Resource) -> str:
    code = r.attrs.get("code")
    return code.reveal() if isinstance(code, Sensitive) else ""


def _update_attrs(change: Change) -> dict[str, Any]:
    """What an UPDATE sends: the desired attributes, with the live code when the plan could not see it."""
    assert change.desired is not None and change.live is not None  # noqa: S101  (UPDATE has both)
    attrs = dict(change.desired.attrs)
    if "code" not in attrs and "code" in change.live.attrs:
        attrs["code"] = change.live.attrs["code"]
    return attrs


def _code_done(change: Change) -> Callable[[list[dict[str, Any]]], bool]:
    """The test on a lock's keypad auths that says `change` is in effect."""
    if change.action is Action.CREATE and change.desired is not None:
        want = change.desired.attrs
        return lambda auths: any(_same(a, want) for a in auths)
    if change.action is Action.UPDATE and change.desired is not None and change.live is not None:
        rid, attrs = change.live.remote_id, _update_attrs(change)
        return lambda auths: any(a.get("id") == rid and _same(a, attrs) for a in auths)
    if change.action is Action.DELETE and change.live is not None:
        gone = change.live.remote_id
        return lambda auths: all(a.get("id") != gone for a in auths)
    raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")


def _lock_hint(change: Change) -> str:
    lock = (change.desired or change.live or _missing(change)).name.split("/")[0]
    return (f"check the keypad codes of lock {lock} in Nuki Web (or run `tenantctl plan`: it shows whether "
            "the change is still to do)")


def _same(auth: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    have = live_code_attrs(auth, _attrs_zone(want))
    return all(have.get(k) == v for k, v in want.items())


def _match_codes(slug: str, lock: int, auths: list[dict[str, Any]], wanted: list[Resource],
                 zone_id: str = DEFAULT_ZONE) -> list[Resource]:
    """Live keypad auths of one lock → resources named like the desired ones they stand for."""
    ours = [a for a in auths if str(a.get("name", "")).startswith(MARKER)]
    free = {r.name: r for r in wanted}
    named: dict[str, str] = {}  # auth id → resource name
    for a in ours:  # by code first: unique per lock, and the teammate's identity on the keypad
        code = Sensitive(str(a["code"])) if a.get("code") is not None else None
        hit = next((n for n, r in free.items() if code is not None and r.attrs.get("code") == code), None)
        if hit is not None:
            named[str(a.get("id"))] = hit
            free.pop(hit)
    for a in ours:  # then by our name: the code was rotated
        if str(a.get("id")) in named:
            continue
        hit = next((n for n, r in free.items() if r.attrs.get("name") == a.get("name")), None)
        if hit is not None:
            named[str(a.get("id"))] = hit
            free.pop(hit)
    out = []
    for a in auths:
        aid = str(a.get("id"))
        owned = a in ours
        name = named.get(aid) or f"{lock}/~{aid}"
        out.append(Resource(NAME, "keypad_code", slug, name, live_code_attrs(a, zone_id), remote_id=aid,
                            owned=owned))
    return out


def _webhooks(slug: str, hooks: list[dict[str, Any]], url: str) -> list[Resource]:
    marker = f"/api/webhooks/nuki/t/{slug}"
    out: list[Resource] = []
    primary_taken = False
    # Newest first: the latest creation is the one whose secret was written back.
    for h in sorted(hooks, key=lambda h: int(h.get("id") or 0), reverse=True):
        hook_url = str(h.get("webhookUrl") or "")
        attrs = {"url": hook_url, "features": sorted(str(f) for f in h.get("webhookFeatures") or [])}
        hid = str(h.get("id"))
        if hook_url == url and not primary_taken:
            primary_taken = True
            out.append(Resource(NAME, "decentral_webhook", slug, "", attrs, remote_id=hid))
        else:
            out.append(Resource(NAME, "decentral_webhook", slug, f"#{hid}", attrs, remote_id=hid,
                                owned=hook_url.rstrip("/").endswith(marker)))
    return out


def _health_verdict(change: Change) -> tuple[bool, str] | None:
    """A plan's change as a health row: a webhook to create is described as what is missing now, not as
    the plan's note about what apply will do."""
    if change.kind == "decentral_webhook" and change.action is Action.CREATE:
        return False, "no decentral webhook registered: run apply"
    return default_check(change)
