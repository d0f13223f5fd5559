"""Where each provider must send a tenant's webhooks."""

from __future__ import annotations

from tenancy.model import Tenant

WEBHOOK_PROVIDERS = ("hospitable", "wa", "beds24", "nuki")


def webhook_url(provider: str, slug: str, domain: str) -> str:
    """`https://<domain>/api/webhooks/<provider>/t/<slug>`; the tenant is chosen by this URL only."""
    if provider not in WEBHOOK_PROVIDERS:
        raise ValueError(f"unknown webhook provider {provider!r}")
    return f"https://{domain}/api/webhooks/{provider}/t/{slug}"


def tenant_domain(tenant: Tenant, platform_domain: str) -> str:
    return tenant.domain or platform_domain


def tenant_webhook_url(provider: str, tenant: Tenant, platform_domain: str) -> str:
    """The URL a provider must call for this tenant (its own domain, else the platform's)."""
    return webhook_url(provider, tenant.slug, tenant_domain(tenant, platform_domain))
