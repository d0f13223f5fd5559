"""Pure sender checks, one per provider: HMAC signatures, Meta's handshake, a shared-secret header.

Every check takes the raw header value (or None) and the currently valid secrets (several during a
rotation), and raises :class:`VerificationFailed` or returns None. Anything malformed (missing, wrong
prefix, not hex, wrong length, non-ASCII) is the same failure to the caller: the server answers one
uniform 401; the precise ``reason`` is only for the webhook log. Comparisons are constant-time, and
every secret is tried (no early exit), so timing tells nothing about which secret nearly matched.

No falcon, httpx or SQLAlchemy here (an import-linter contract keeps it so).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

_HEX64 = re.compile(r"[0-9a-f]{64}")
META_PREFIX = "sha256="


class VerificationFailed(Exception):
    """The sender could not be verified. ``reason`` is a short code for the log, never a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hmac_sha256_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _matches_any(given: bytes, candidates: Sequence[bytes]) -> bool:
    ok = False
    for c in candidates:
        ok |= hmac.compare_digest(given, c)
    return ok


def _hex_digest_from(value: str | None) -> bytes:
    if value is None or not value.strip():
        raise VerificationFailed("missing-signature")
    v = value.strip().lower()
    if not _HEX64.fullmatch(v):
        raise VerificationFailed("malformed-signature")
    return v.encode("ascii")


def verify_hex_hmac(body: bytes, header: str | None, secrets: Sequence[bytes]) -> None:
    """Hospitable (`Signature`) and Nuki (`X-Nuki-Signature-SHA256`): hex HMAC-SHA256 of the raw body."""
    given = _hex_digest_from(header)
    if not secrets:
        raise VerificationFailed("no-secret-configured")
    expected = [hmac_sha256_hex(s, body).encode("ascii") for s in secrets]
    if not _matches_any(given, expected):
        raise VerificationFailed("bad-signature")


def verify_meta_signature(body: bytes, header: str | None, app_secrets: Sequence[bytes]) -> None:
    """WhatsApp: `X-Hub-Signature-256: sha256=<hex>` keyed with the Meta app secret."""
    if header is None or not header.strip():
        raise VerificationFailed("missing-signature")
    v = header.strip()
    if not v.lower().startswith(META_PREFIX):
        raise VerificationFailed("malformed-signature")
    verify_hex_hmac(body, v[len(META_PREFIX):], app_secrets)


def verify_shared_secret(header: str | None, secrets: Sequence[bytes]) -> None:
    """Beds24: no signature exists, so the tenant's secret travels in a custom header."""
    if header is None or not header:
        raise VerificationFailed("missing-secret-header")
    if not secrets:
        raise VerificationFailed("no-secret-configured")
    try:
        given = header.encode("ascii")
    except UnicodeEncodeError:
        raise VerificationFailed("malformed-secret-header") from None
    if not _matches_any(given, secrets):
        raise VerificationFailed("bad-secret-header")


def verify_handshake(
    mode: str | None, token: str | None, challenge: str | None, expected: bytes | None
) -> str:
    """Meta's subscription handshake: returns the challenge to echo, or raises."""
    if mode != "subscribe":
        raise VerificationFailed("handshake-bad-mode")
    if expected is None:
        raise VerificationFailed("no-secret-configured")
    if not token:
        raise VerificationFailed("handshake-missing-token")
    try:
        given = token.encode("ascii")
    except UnicodeEncodeError:
        raise VerificationFailed("handshake-bad-token") from None
    if not hmac.compare_digest(given, expected):
        raise VerificationFailed("handshake-bad-token")
    if not challenge:
        raise VerificationFailed("handshake-missing-challenge")
    return challenge
