"""`tenantctl new`: scaffold, encrypt, and tell the admin what to paste where."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tenancy.findings import Severity
from tenancy.model import is_slug
from tenancy.scaffold import scaffold
from tenancy.sops import encrypt_text
from tenancy.sops_config import SOPS_CONFIG_NAME, check_sops_config
from tenancy.urls import webhook_url, whatsapp_app_callback_url


class OnboardingError(Exception):
    pass


@dataclass(frozen=True)
class NewTenant:
    path: Path
    checklist: list[str]


def create_tenant(tenants_dir: Path, slug: str, domain: str, display_name: str | None = None) -> NewTenant:
    if not is_slug(slug):
        raise OnboardingError(f"invalid slug {slug!r}: use lower-case letters, digits and hyphens")
    path = tenants_dir / f"{slug}.yaml"
    if path.exists():
        raise OnboardingError(f"{path} already exists: refusing to overwrite a tenant")
    config = tenants_dir / SOPS_CONFIG_NAME
    if not config.is_file():
        raise OnboardingError(f"{config} is missing: it names the age recipients the secrets are encrypted to "
                              "(`tenantctl keygen --out FILE` makes a key and prints its recipient)")
    problems = [f for f in check_sops_config(config) if f.severity is Severity.ERROR]
    if problems:
        raise OnboardingError("refusing to encrypt new secrets with these rules:\n" +
                              "\n".join(f.text() for f in problems))
    encrypted = encrypt_text(scaffold(slug, display_name), path.name, config)
    # O_EXCL: two admins racing on one slug cannot overwrite each other.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(encrypted)
    urls = {p: webhook_url(p, slug, domain) for p in ("hospitable", "wa", "beds24")}
    checklist = [
        f"Fill in the CHANGE-ME values: `sops {path}` (secrets stay encrypted on disk).",
        "Hospitable → Apps → Webhooks: add " + urls["hospitable"] + " and paste hospitable.webhook_secret "
        f"(see it with `sops decrypt --extract '[\"hospitable\"][\"webhook_secret\"]' {path}`).",
        "Meta: set whatsapp.phone_number_id and business_account_id; `tenantctl apply` subscribes the WABA to "
        + urls["wa"] + " with the generated verify token: messages and message statuses arrive there.",
        "Meta (once per platform): the app's callback URL (Meta app dashboard → WhatsApp → Configuration) "
        "must be " + whatsapp_app_callback_url(domain) + " with the platform verify token "
        "TENANTCTL_META_VERIFY_TOKEN: template status/category, phone-number quality and account events "
        "arrive only there, routed to this tenant by business_account_id (docs/whatsapp-webhooks.md).",
        "Beds24 (if used): add a `beds24:` block to the file (token, property_ids, webhook_secret; "
        "docs/tenant-file.md), then Settings → Properties → Booking webhook → " + urls["beds24"]
        + " with the custom header `X-Tenantctl-Secret` set to that webhook_secret.",
        "Nuki: `tenantctl apply` registers the lock webhook and stores its secret.",
        f"Run `tenantctl validate {path}`, set status: active, and open a pull request.",
    ]
    return NewTenant(path=path, checklist=checklist)
