"""Where each provider must send a tenant's webhooks."""

from __future__ import annotations

from tenancy.model import Tenant

WEBHOOK_PROVIDERS = ("hospitable", "wa", "beds24", "nuki")


def webhook_url(provider: str, slug: str, domain: str) -> str:
    """`https://<domain>/api/webhooks/<provider>/t/<slug>`; the tenant is chosen by this URL only."""
    if provider not in WEBHOOK_PROVIDERS:
        raise ValueError(f"unknown webhook provider {provider!r}")
    return f"https://{domain}/api/webhooks/{provider}/t/{slug}"


def whatsapp_app_callback_url(domain: str) -> str:
    """`https://<domain>/api/webhooks/wa`: the Meta app's default callback URL, one for the platform.

    Meta sends the WhatsApp fields that name no phone number (message_template_status_update,
    template_category_update, phone_number_quality_update, account_update, …) only to the app's
    callback, never to a WABA's or phone number's override; the server routes them by WABA ID.
    See docs/whatsapp-webhooks.md.
    """
    return f"https://{domain}/api/webhooks/wa"


def tenant_domain(tenant: Tenant, platform_domain: str) -> str:
    return tenant.domain or platform_domain


def tenant_webhook_url(provider: str, tenant: Tenant, platform_domain: str) -> str:
    """The URL a provider must call for this tenant (its own domain, else the platform's)."""
    return webhook_url(provider, tenant.slug, tenant_domain(tenant, platform_domain))
