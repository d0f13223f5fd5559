"""Show that a secret is set, and whether two are the same, without showing it."""

from __future__ import annotations

import hashlib

from pydantic import SecretStr


def fingerprint(value: SecretStr | str) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:8]


def masked(value: SecretStr | str) -> str:
    return f"(sensitive) sha256:{fingerprint(value)}"
