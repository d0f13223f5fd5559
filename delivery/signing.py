"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec "Signature scheme"). Pure.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
``v1,<base64 HMAC-SHA256>`` with the secret's key; several signatures are space-separated, so during a
rotation the receiver accepts either secret. Secrets are ``whsec_<base64 key>`` (the prefix is optional).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "whsec_"


MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64  # the Standard Webhooks range for a secret's key (docs/delivery.md)
_HOW = f"use {PREFIX} + base64 of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes"


class BadSecret(ValueError):
    """A delivery secret that is not ``whsec_`` followed by base64 of 24 to 64 bytes."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (a bare base64 key of the right size is taken too). Raises
    BadSecret saying what is wrong (without echoing the secret)."""
    text = secret.strip()
    prefixed = text.startswith(PREFIX)
    text = text.removeprefix(PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = None
    if not prefixed and (key is None or not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES):
        raise BadSecret(f"a delivery secret does not start with {PREFIX}; {_HOW}")
    if key is None:
        raise BadSecret(f"a delivery secret is not base64 after its {PREFIX} prefix; {_HOW}")
    if len(key) < MIN_KEY_BYTES:
        raise BadSecret(f"a delivery secret's key is shorter than {MIN_KEY_BYTES} bytes (it has {len(key)}); {_HOW}")
    if len(key) > MAX_KEY_BYTES:
        raise BadSecret(f"a delivery secret's key is longer than {MAX_KEY_BYTES} bytes (it has {len(key)}); {_HOW}")
    return key


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` signature per key, newest key first."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii") for key in keys
    )


def verify(keys: list[bytes], msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """True when any ``v1`` signature in ``header`` matches any key (constant-time compare). No clock check:
    the receiver decides how old a timestamp may be."""
    expected = {sig for part in sign(keys, msg_id, timestamp, body).split(" ") for sig in [part[3:]]}
    for part in header.split():
        version, _, sig = part.partition(",")
        if version == "v1" and any(hmac.compare_digest(sig, e) for e in expected):
            return True
    return False
