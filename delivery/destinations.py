"""Where each accepted event goes: a URL per provider from settings, overridden per tenant by its file.

Destinations are configuration, never taken from a payload; their hosts form the outbound allow-list.
Pure: the settings and the tenants are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tenancy.model import Tenant
from tenancy.settings import Settings

PROVIDERS = ("hospitable", "whatsapp", "nuki", "beds24")


@dataclass(frozen=True)
class Destinations:
    platform: Mapping[str, str]  # provider -> URL (TENANTCTL_DELIVERY_URL_<PROVIDER>)
    tenants: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (tenant, provider) -> URL

    def url_for(self, tenant: str | None, provider: str) -> str | None:
        if tenant is not None and (tenant, provider) in self.tenants:
            return self.tenants[(tenant, provider)]
        return self.platform.get(provider)

    def providers(self) -> tuple[str, ...]:
        """Providers with at least one destination: the worker claims only their events."""
        named = set(self.platform) | {p for _, p in self.tenants}
        return tuple(p for p in PROVIDERS if p in named)

    def urls(self) -> set[str]:
        return set(self.platform.values()) | set(self.tenants.values())


def from_settings(settings: Settings, tenants: Iterable[Tenant] = ()) -> Destinations:
    platform = {p: url for p in PROVIDERS if (url := getattr(settings, f"delivery_url_{p}"))}
    overrides: dict[tuple[str, str], str] = {}
    for tenant in tenants:
        if tenant.delivery is None:
            continue
        for p in PROVIDERS:
            url = getattr(tenant.delivery, p)
            if url:
                overrides[(tenant.slug, p)] = url
    return Destinations(platform, overrides)
