"""Show that a secret is set, and whether two are the same, without showing it.

A plain SHA-256 prefix would do for long random tokens, but not for a 6-digit keypad code: all 531,441
codes hash in a blink. So fingerprints are keyed HMAC-SHA256, and one key serves `show`, plans and
provider instructions. The key is the platform's TENANTCTL_FINGERPRINT_KEY when set (then a value's
fingerprint never changes, so admins can compare across runs and rotations); without it, a key derived
from the tenant's own secrets (unknowable without them, but it changes whenever any of them does).

The derived key leaves out the values a provider issues at apply (ISSUED: they live in the provider state
store and are overlaid on the tenant by plan, apply and health but only marked by `show`), so every reader
derives the same key from the same tenant file, before and after an apply.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator

from pydantic import BaseModel, SecretStr

from tenancy.model import Tenant

FINGERPRINT_KEY_ENV = "TENANTCTL_FINGERPRINT_KEY"
# Dotted paths of secrets a provider hands back on apply (ApplyResult.write_back; today Nuki's decentral
# webhook secret): not part of the derived key, which must not move when apply stores one.
ISSUED = frozenset({"nuki.webhook_secret"})


def _file_secrets(node: object, path: str = "") -> Iterator[str]:
    """The tenant's secret values, except those under an ISSUED path."""
    if path in ISSUED:
        return
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _file_secrets(getattr(node, name), f"{path}.{name}" if path else name)
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            yield from _file_secrets(v, f"{path}.{i}")


def tenant_key(tenant: Tenant) -> bytes:
    platform = os.environ.get(FINGERPRINT_KEY_ENV, "")
    if platform:
        return hashlib.sha256(b"tenantctl/fingerprint/v2\0" + platform.encode() + b"\0" + tenant.slug.encode()).digest()
    h = hashlib.sha256(b"tenantctl/plan-fingerprint/v1\0" + tenant.slug.encode())
    for value in sorted(_file_secrets(tenant)):
        h.update(b"\0" + value.encode("utf-8"))
    return h.digest()


def keyed_fingerprint(value: SecretStr | str, key: bytes) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def fingerprint(tenant: Tenant, value: SecretStr | str) -> str:
    return keyed_fingerprint(value, tenant_key(tenant))


def masked(value: SecretStr | str, key: bytes) -> str:
    return f"(sensitive) #{keyed_fingerprint(value, key)}"
