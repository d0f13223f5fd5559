"""Show that a secret is set, and whether two are the same, without showing it.

A plain SHA-256 prefix would do for long random tokens, but not for a 6-digit keypad code: all 531,441
codes hash in a blink. So fingerprints are keyed HMAC-SHA256, and one key serves `show`, plans and
provider instructions. The key is the platform's TENANTCTL_FINGERPRINT_KEY when set (then a value's
fingerprint never changes, so admins can compare across runs and rotations); without it, a key derived
from the tenant's own secrets (unknowable without them, but it changes whenever any of them does).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from pydantic import SecretStr

from tenancy.model import Tenant
from tenancy.redact import secret_values

FINGERPRINT_KEY_ENV = "TENANTCTL_FINGERPRINT_KEY"


def tenant_key(tenant: Tenant) -> bytes:
    platform = os.environ.get(FINGERPRINT_KEY_ENV, "")
    if platform:
        return hashlib.sha256(b"tenantctl/fingerprint/v2\0" + platform.encode() + b"\0" + tenant.slug.encode()).digest()
    h = hashlib.sha256(b"tenantctl/plan-fingerprint/v1\0" + tenant.slug.encode())
    for value in sorted(s.get_secret_value() for s in secret_values(tenant)):
        h.update(b"\0" + value.encode("utf-8"))
    return h.digest()


def keyed_fingerprint(value: SecretStr | str, key: bytes) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hmac.new(key, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:12]


def fingerprint(tenant: Tenant, value: SecretStr | str) -> str:
    return keyed_fingerprint(value, tenant_key(tenant))


def masked(value: SecretStr | str, key: bytes) -> str:
    return f"(sensitive) #{keyed_fingerprint(value, key)}"
