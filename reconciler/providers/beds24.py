"""Beds24 (legacy, read-only): health checks only. Nothing is planned or written.

`health` checks that the token lists the account's properties and that every Beds24 property ID the tenant
file names (`beds24.property_ids` and each property's `beds24_property_id`) is among them: one GET.
Beds24 charges credits (100 per 5 minutes per account), so the plan does not call it at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import PermanentError, ProviderError
from reconciler.health_status import Health
from reconciler.providers.base import HealthCheck, HealthOnly, Http, ProviderContext, check, error_check, inbound_check
from tenancy.model import Tenant

NAME = "beds24"


class Beds24Provider(HealthOnly):
    reason = "is read-only here"
    name = NAME

    def applies_to(self, tenant: Tenant) -> bool:
        return tenant.beds24 is not None

    def health(self, tenant: Tenant, ctx: ProviderContext, http: Http) -> list[HealthCheck]:
        if tenant.beds24 is None:
            return []
        slug = tenant.slug
        token = tenant.beds24.token.get_secret_value()
        try:
            resp = http.request(NAME, "GET", ctx.base_urls[NAME].rstrip("/") + "/properties",
                                headers={"token": token}, secrets=[token])
            if resp.status_code >= 400:  # a client that hands error responses back instead of raising
                raise PermanentError(NAME, "Beds24 API error", status=resp.status_code)
            body = resp.json()
        except ProviderError as err:
            return [error_check(NAME, slug, f"{NAME}.token[{slug}]", err), *_inbound(tenant, ctx)]
        data = body.get("data") if isinstance(body, Mapping) else None
        found = {int(p["id"]) for p in data or [] if isinstance(p, Mapping) and isinstance(p.get("id"), int)}
        checks = [check(NAME, slug, f"{NAME}.token[{slug}]", Health.HEALTHY,
                        "the token lists the account's properties")]
        declared = dict.fromkeys([*tenant.beds24.property_ids,
                                  *(p.beds24_property_id for p in tenant.properties if p.beds24_property_id)])
        for pid in declared:
            ok = pid in found
            checks.append(check(NAME, slug, f"beds24.property[{slug}/{pid}]",
                                Health.HEALTHY if ok else Health.MISSING,
                                "found" if ok else f"property {pid} is not in the Beds24 account",
                                "" if ok else "check the ID in the tenant file, or the token's account"))
        return [*checks, *_inbound(tenant, ctx)]


def _inbound(tenant: Tenant, ctx: ProviderContext) -> list[HealthCheck]:
    """The last Beds24 webhook: Beds24 sends one per booking change, so a long silence needs a look."""
    return inbound_check(NAME, tenant, ctx,
                         stale_hint="check in Beds24 (Settings → Properties → Access → Booking webhook) that the "
                                    "webhook URL and its custom header are still set",
                         never_hint="set the booking webhook in Beds24 to the tenant's URL with the custom header "
                                    "carrying beds24.webhook_secret")
