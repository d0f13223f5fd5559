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

Live auths are matched to teammates per lock: first by code (codes are unique per lock), then by our
name (a rotated code becomes an UPDATE), anything else ours is an orphan (DELETE).

Writes answer 204 and reach the lock later: apply reads back (bounded backoff) until the lock shows the
change. Updates send the whole object (a partial update clears the time windows).

Dates: `valid_from` → `allowedFromDate` at 00:00:00Z, `valid_until` → `allowedUntilDate` at 23:59:59Z
(Nuki stores UTC; the lock's time zone is not considered). Times are minutes from midnight; no window is
0-0. Weekdays map to the bitmask Mon=64 … Sun=1 (spec: SmartlockAuth.allowedWeekDays).

Calls (per tenant): a no-op plan makes 3 GETs (smartlocks, all keypad auths of the account, webhooks);
each code write is 1 write + ≥1 read-back GET of that lock's auths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from reconciler.diff import adoption, diff, sort_changes
from reconciler.errors import InvalidRequest, PermanentError
from reconciler.model import Action, Change, Resource, Sensitive, Severity, report
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext, plan_health
from tenancy.model import Tenant, Weekday
from tenancy.urls import tenant_webhook_url

NAME = "nuki"
KEYPAD = 13
MARKER = "tc:"
NAME_MAX = 32
WEBHOOK_FEATURES = ("DEVICE_AUTHS", "DEVICE_LOGS", "DEVICE_STATUS")
READBACK_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before each read-back after the first

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
    hours, mins = text.split(":")[:2]
    return int(hours) * 60 + int(mins)


def auth_name(teammate_name: str) -> str:
    return (MARKER + teammate_name)[:NAME_MAX]


def _day(value: Any) -> str | None:
    """The date part of a Nuki date-time ("2025-03-01T00:00:00.000Z" → "2025-03-01")."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        return value[:10]


def live_code_attrs(auth: Mapping[str, Any]) -> dict[str, Any]:
    """A keypad auth as Nuki returns it → the attributes we compare (same shape as the desired side)."""
    start, end = int(auth.get("allowedFromTime") or 0), int(auth.get("allowedUntilTime") or 0)
    window = start != 0 or end != 0
    attrs: dict[str, Any] = {
        "name": auth.get("name"),
        "weekdays": mask_to_weekdays(int(auth.get("allowedWeekDays", 127))),
        "from_time": minutes_to_hhmm(start) if window else None,
        "until_time": minutes_to_hhmm(end) if window else None,
        "valid_from": _day(auth.get("allowedFromDate")),
        "valid_until": _day(auth.get("allowedUntilDate")),
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
        body["allowedFromDate"] = f"{attrs['valid_from']}T00:00:00.000Z"
    if attrs.get("valid_until"):
        body["allowedUntilDate"] = f"{attrs['valid_until']}T23:59:59.000Z"
    code = attrs.get("code")
    if isinstance(code, Sensitive):
        body["code"] = int(code.reveal())
    return body


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


class NukiProvider:
    name = NAME

    def __init__(self, readback_delays: Sequence[float] = READBACK_DELAYS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.readback_delays = tuple(readback_delays)
        self._sleep = sleep

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
            attrs: dict[str, Any] = {
                "name": auth_name(tm.name),
                "code": Sensitive(access.keypad_code.get_secret_value()),
                "weekdays": mask_to_weekdays(weekdays_to_mask(access.weekdays)),
                "from_time": access.from_time.strftime("%H:%M") if access.from_time else None,
                "until_time": access.until_time.strftime("%H:%M") if access.until_time else None,
                "valid_from": _iso(access.valid_from),
                "valid_until": _iso(access.valid_until),
                "enabled": True,
                "remote_allowed": False,
            }
            for key in tm.properties:
                found = tenant.property(key)
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
        for lid in sorted(declared):
            on_lock = [a for a in auths if int(a.get("smartlockId", -1)) == lid and a.get("type") == KEYPAD]
            live.extend(_match_codes(slug, lid, on_lock, [r for r in wanted_codes
                                                          if r.name.split("/")[0] == str(lid)]))
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
        notes = {Action.CREATE: "the webhook's secret will be written into the tenant file, encrypted",
                 Action.DELETE: "replaced or stale webhook of ours (its secret is not in the tenant file, or "
                                "its URL or features differ)"}
        changes.extend(replace(c, note=notes[c.action]) if c.action in notes else c
                       for c in diff([want_hook], hooks))
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
        if change.action is Action.CREATE and change.desired is not None:
            body = {**auth_body(change.desired.attrs), "type": KEYPAD}
            body.pop("enabled", None)  # not part of the create object
            self._call(http, "PUT", auths_url, token, json=body, extra=_code_secret(change.desired))
            want = change.desired.attrs
            self._await(http, auths_url, token, lambda auths: any(_same(a, want) for a in auths), change)
            return ApplyResult(change, detail=f"keypad code created on lock {lock}")
        if change.action is Action.UPDATE and change.desired is not None and change.live is not None:
            attrs = dict(change.desired.attrs)
            if "code" not in attrs and "code" in change.live.attrs:
                attrs["code"] = change.live.attrs["code"]
            self._call(http, "POST", f"{auths_url}/{change.live.remote_id}", token, json=auth_body(attrs),
                       extra=_code_secret(change.desired))
            rid = change.live.remote_id
            self._await(http, auths_url, token,
                        lambda auths: any(a.get("id") == rid and _same(a, attrs) for a in auths), change)
            return ApplyResult(change, detail=f"keypad code updated on lock {lock}")
        if change.action is Action.DELETE and change.live is not None:
            rid = change.live.remote_id
            self._call(http, "DELETE", f"{auths_url}/{rid}", token)
            self._await(http, auths_url, token, lambda auths: all(a.get("id") != rid for a in auths), change)
            return ApplyResult(change, detail=f"keypad code deleted from lock {lock}")
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    def _apply_webhook(self, change: Change, http: Http, base: str, token: str) -> ApplyResult:
        hooks_url = f"{base}/api/decentralWebhook"
        if change.action is Action.CREATE and change.desired is not None:
            attrs = change.desired.attrs
            made = self._call(http, "PUT", hooks_url, token,
                              json={"webhookUrl": attrs["url"], "webhookFeatures": list(attrs["features"])})
            secret = made.get("secret") if isinstance(made, Mapping) else None
            hook_id = made.get("id") if isinstance(made, Mapping) else None
            if not isinstance(secret, str) or not secret:
                raise PermanentError(NAME, "the webhook was created but Nuki returned no secret")
            seen = _list(self._call(http, "GET", hooks_url, token, extra=secret))
            if not any(h.get("id") == hook_id and h.get("webhookUrl") == attrs["url"] for h in seen):
                raise PermanentError(NAME, f"webhook {hook_id} does not show after creation")
            return ApplyResult(change, write_back={("nuki", "webhook_secret"): secret},
                               detail=f"webhook {hook_id} created; its secret goes to the tenant file")
        if change.action is Action.DELETE and change.live is not None:
            self._call(http, "DELETE", f"{hooks_url}/{change.live.remote_id}", token)
            return ApplyResult(change, detail=f"decentral webhook {change.live.remote_id} deleted")
        raise InvalidRequest(NAME, f"cannot apply {change.action} {change.address}")

    def _await(self, http: Http, url: str, token: str, done: Callable[[list[dict[str, Any]]], bool],
               change: Change) -> None:
        """Read back until the lock shows the write (Nuki applies it asynchronously), bounded."""
        for delay in (0.0, *self.readback_delays):
            if delay:
                self._sleep(delay)
            auths = [a for a in _list(self._call(http, "GET", url, token, params={"types": KEYPAD}))
                     if a.get("type") == KEYPAD]
            if done(auths):
                return
        raise PermanentError(NAME, f"{change.address}: the lock did not show the {change.action.value} after "
                             f"{sum(self.readback_delays):.1f} s (it may still be pending; plan again)")

    # Health ---------------------------------------------------------------------------------------
    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        return plan_health(self, tenant, ctx, http, "the API token lists the account's locks")

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


def _same(auth: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    have = live_code_attrs(auth)
    return all(have.get(k) == v for k, v in want.items())


def _match_codes(slug: str, lock: int, auths: list[dict[str, Any]], wanted: list[Resource]) -> list[Resource]:
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
        out.append(Resource(NAME, "keypad_code", slug, name, live_code_attrs(a), remote_id=aid, owned=owned))
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
