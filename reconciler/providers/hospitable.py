"""Hospitable (v2): the API key works, properties map both ways, and the webhook is set up by hand.

Resources
- `hospitable.property[slug/<uuid>]`: every `hospitable_property_id` in the file exists in the account
  (missing: REPORT error); account properties that no tenant property maps: REPORT (info).
- `hospitable.webhook[slug]`: Hospitable has no API for webhooks, so the plan carries a MANUAL step with
  the URL to paste and the events to select; it is `done` once a verified webhook from Hospitable reached
  the tenant's URL (`ctx.last_verified_event[(slug, "hospitable")]`).

Nothing here writes: `apply` refuses every change.

Calls (per tenant): a no-op plan makes ceil(properties / 100) GETs: one for up to 100 properties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.diff import sort_changes
from reconciler.errors import InvalidRequest, PermanentError
from reconciler.model import Action, Change, Resource, Severity, report
from reconciler.providers.base import ApplyResult, HealthCheck, Http, ProviderContext, inbound_check, plan_health
from tenancy.fingerprint import fingerprint
from tenancy.model import Tenant
from tenancy.urls import tenant_webhook_url

NAME = "hospitable"
PER_PAGE = 100
MAX_PAGES = 1000  # a guard against a server that never reaches last_page
WEBHOOK_EVENTS = ("reservation.created", "reservation.changed", "message.created", "property.created",
                  "property.changed", "property.deleted", "property.merged", "review.created")


class HospitableProvider:
    name = NAME

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.hospitable is not None

    def desired(self, tenant: Tenant, ctx: ProviderContext) -> list[Resource]:
        out = [Resource(NAME, "property", tenant.slug, p.hospitable_property_id.lower(), {"property": p.key})
               for p in tenant.properties if p.hospitable_property_id]
        out.append(Resource(NAME, "webhook", tenant.slug, "", {"url": _url(tenant, ctx)}))
        return out

    def observe(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[Resource]:
        token = _token(tenant)
        url = ctx.base_urls[NAME].rstrip("/") + "/properties"
        live: list[Resource] = []
        page = 1
        while page <= MAX_PAGES:
            # Spec: get-properties (page, per_page ≤ 100; data[].id, data[].name, meta.last_page).
            # Build each page's URL ourselves: the API's `links` are http:// (and a body never picks a host).
            # `X-hospitable-trace` is not in the spec: read only when present, as the error's trace ID.
            resp = http.request(NAME, "GET", url, headers={"Authorization": f"Bearer {token}"},
                                params={"page": page, "per_page": PER_PAGE}, secrets=[token])
            if resp.status_code >= 400:  # a client that hands error responses back instead of raising
                raise PermanentError(NAME, "Hospitable API error", status=resp.status_code,
                                     request_id=resp.headers.get("X-hospitable-trace"))
            body = resp.json()
            data = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise PermanentError(NAME, "unexpected answer to GET /properties: no `data` list",
                                     request_id=resp.headers.get("X-hospitable-trace"))
            live.extend(Resource(NAME, "property", tenant.slug, str(p["id"]).lower(), {"name": p.get("name")},
                                 remote_id=str(p["id"]))
                        for p in data if isinstance(p, Mapping) and p.get("id"))
            meta: Any = body.get("meta") or {}
            last = meta.get("last_page") if isinstance(meta, Mapping) else None
            # It answers 200 even to parameters it ignores: stop on what came back, not on what we asked.
            if not isinstance(last, int) or page >= last or not data:
                break
            page += 1
        return live

    def plan(self, tenant: Tenant, ctx: ProviderContext, live: Sequence[Resource]) -> list[Change]:
        if tenant.hospitable is None:
            return []
        desired = self.desired(tenant, ctx)
        have = {r.address: r for r in live if r.kind == "property"}
        want = {r.address: r for r in desired if r.kind == "property"}
        changes: list[Change] = []
        for addr, d in want.items():
            lv = have.get(addr)
            if lv is None:
                changes.append(report(Severity.ERROR, NAME, "property", d.tenant, addr, desired=d, note=(
                    f"property {d.attrs['property']} maps to Hospitable property {d.name}, which the "
                    "account does not have: check the ID or the API key's account")))
            else:
                changes.append(Change(Action.NOOP, NAME, "property", d.tenant, addr, desired=d, live=lv))
        changes.extend(report(Severity.INFO, NAME, "property", lv.tenant, addr, live=lv, note=(
            f"Hospitable property {lv.attrs.get('name')!r} is not mapped by any tenant property"))
            for addr, lv in have.items() if addr not in want)
        hook = next(r for r in desired if r.kind == "webhook")
        done = (tenant.slug, NAME) in ctx.last_verified_event
        note = _instructions(hook.attrs["url"], fingerprint(tenant, tenant.hospitable.webhook_secret), done)
        changes.append(Change(Action.MANUAL, NAME, "webhook", tenant.slug, hook.address, desired=hook,
                              note=note, done=done))
        return sort_changes(changes)

    def apply(self, tenant: Tenant, ctx: ProviderContext, change: Change, http: Http) -> ApplyResult:
        raise InvalidRequest(NAME, f"{change.address}: Hospitable is not changed by tenantctl "
                             "(webhooks are set up by hand)")

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        """The API key answers, the properties map, and a verified webhook arrived within `ctx.window`
        (the seed: "if none in 24 h, Hospitable's webhook may have been disabled")."""
        hook = f"{NAME}.webhook[{tenant.slug}]"
        checks = plan_health(self, tenant, ctx, http, "the API key lists the account's properties", _check)
        url = _url(tenant, ctx)
        inbound = inbound_check(
            NAME, tenant, ctx, address=hook,
            stale_hint="if none in 24 h, Hospitable's webhook may have been disabled: in Hospitable, Apps → "
                       f"Webhooks, check that the webhook to {url} is enabled (re-enable or add it again)",
            never_hint="set up the webhook by hand. " + _instructions(url, _fingerprint(tenant), False))
        # The log's evidence, when read, replaces the plan's "done ever" view of the manual step.
        return [c for c in checks if not (inbound and c.name == hook)] + inbound


def _check(c: Change) -> tuple[bool, str] | None:
    if c.kind == "property" and (c.action is Action.NOOP or c.is_error):
        return c.action is Action.NOOP, c.note or "found"
    if c.kind == "webhook":
        return c.done, "verified webhooks arrive" if c.done else "no verified webhook from Hospitable yet"
    return None


def _instructions(url: str, secret: str, done: bool) -> str:
    steps = (f"In Hospitable: Apps → Webhooks → add a webhook. URL: {url} . Events: "
             f"{', '.join(WEBHOOK_EVENTS)}. Its signing secret must equal the tenant file's "
             f"hospitable.webhook_secret (fingerprint #{secret}, as `tenantctl show` prints it).")
    return ("done: verified webhooks from Hospitable arrive. " if done else "") + steps


def _fingerprint(tenant: Tenant) -> str:
    return fingerprint(tenant, tenant.hospitable.webhook_secret) if tenant.hospitable else ""


def _token(tenant: Tenant) -> str:
    if tenant.hospitable is None:
        raise InvalidRequest(NAME, f"tenant {tenant.slug} has no hospitable section")
    return tenant.hospitable.api_key.get_secret_value()


def _url(tenant: Tenant, ctx: ProviderContext) -> str:
    return tenant_webhook_url("hospitable", tenant, ctx.domain)
