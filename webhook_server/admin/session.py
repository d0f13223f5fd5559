"""The admin session cookie: `<expiry>.<hex HMAC-SHA256(admin token, "admin-session:" + expiry)>`. Pure.

Nothing is stored server-side: any worker verifies it, rotating the admin token ends every session.
"""

from __future__ import annotations

import hashlib
import hmac

COOKIE = "tenantctl_admin"
LIFETIME_S = 8 * 3600


def _mac(token: bytes, expiry: int) -> str:
    return hmac.new(token, f"admin-session:{expiry}".encode(), hashlib.sha256).hexdigest()


def issue(token: bytes, now: float) -> str:
    expiry = int(now) + LIFETIME_S
    return f"{expiry}.{_mac(token, expiry)}"


def valid(token: bytes, value: str | None, now: float) -> bool:
    if not value or "." not in value:
        return False
    raw_expiry, _, mac = value.partition(".")
    if not raw_expiry.isdigit() or int(raw_expiry) < now:
        return False
    return hmac.compare_digest(mac.encode("ascii", "replace"), _mac(token, int(raw_expiry)).encode())


def token_matches(token: bytes, given: str) -> bool:
    try:
        given_bytes = given.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given_bytes, token)
