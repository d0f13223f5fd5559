"""The pure sender checks: every malformed header is the one failure; rotation accepts several secrets."""

from __future__ import annotations

import pytest

from webhook_server.verify import (
    VerificationFailed,
    hmac_sha256_hex,
    verify_handshake,
    verify_hex_hmac,
    verify_meta_signature,
    verify_shared_secret,
)

from .helpers import sign_hex

BODY = b'{"foo":"bar"}'
GOOD = sign_hex("s3cret", BODY)


def test_hospitable_documentation_vector() -> None:
    expected = "cc99bf5947391ddb0d0d9866f5b9d3a68e8b273c5ac8f699b4ae2399a7433118"
    assert hmac_sha256_hex(b"123456", b'{"foo":"bar"}') == expected
    verify_hex_hmac(b'{"foo":"bar"}', expected, [b"123456"])


@pytest.mark.parametrize(
    ("header", "secrets", "reason"),
    [
        (GOOD, [b"s3cret"], None),
        (GOOD.upper(), [b"s3cret"], None),  # hex case does not matter
        (f"  {GOOD} ", [b"s3cret"], None),
        (GOOD, [b"new-secret", b"s3cret"], None),  # the previous secret during a rotation
        (None, [b"s3cret"], "missing-signature"),
        ("", [b"s3cret"], "missing-signature"),
        ("abc", [b"s3cret"], "malformed-signature"),
        (GOOD[:-1] + "g", [b"s3cret"], "malformed-signature"),
        (GOOD + "00", [b"s3cret"], "malformed-signature"),
        ("sha256=" + GOOD, [b"s3cret"], "malformed-signature"),
        ("é" * 64, [b"s3cret"], "malformed-signature"),
        (sign_hex("other", BODY), [b"s3cret"], "bad-signature"),
        (GOOD, [], "no-secret-configured"),
    ],
)
def test_hex_hmac(header: str | None, secrets: list[bytes], reason: str | None) -> None:
    if reason is None:
        verify_hex_hmac(BODY, header, secrets)
    else:
        with pytest.raises(VerificationFailed) as e:
            verify_hex_hmac(BODY, header, secrets)
        assert e.value.reason == reason


def test_signature_covers_every_byte_of_the_body() -> None:
    with pytest.raises(VerificationFailed):
        verify_hex_hmac(BODY + b" ", GOOD, [b"s3cret"])


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("sha256=" + GOOD, None),
        ("SHA256=" + GOOD, None),
        (GOOD, "malformed-signature"),  # the prefix is required
        ("sha1=" + GOOD, "malformed-signature"),
        ("sha256=", "missing-signature"),
        ("sha256=zz", "malformed-signature"),
        (None, "missing-signature"),
        ("sha256=" + sign_hex("nope", BODY), "bad-signature"),
    ],
)
def test_meta_signature(header: str | None, reason: str | None) -> None:
    if reason is None:
        verify_meta_signature(BODY, header, [b"newer", b"s3cret"])
    else:
        with pytest.raises(VerificationFailed) as e:
            verify_meta_signature(BODY, header, [b"newer", b"s3cret"])
        assert e.value.reason == reason


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("shared-1", None),
        ("shared-2", None),
        (None, "missing-secret-header"),
        ("", "missing-secret-header"),
        ("shared-", "bad-secret-header"),
        ("shared-1 ", "bad-secret-header"),
        ("shäred-1", "malformed-secret-header"),
    ],
)
def test_shared_secret_header(header: str | None, reason: str | None) -> None:
    if reason is None:
        verify_shared_secret(header, [b"shared-1", b"shared-2"])
    else:
        with pytest.raises(VerificationFailed) as e:
            verify_shared_secret(header, [b"shared-1", b"shared-2"])
        assert e.value.reason == reason


@pytest.mark.parametrize(
    ("mode", "token", "challenge", "expected", "reason"),
    [
        ("subscribe", "tok-123", "1158201444", b"tok-123", None),
        ("unsubscribe", "tok-123", "1158201444", b"tok-123", "handshake-bad-mode"),
        (None, "tok-123", "1158201444", b"tok-123", "handshake-bad-mode"),
        ("subscribe", "tok-124", "1158201444", b"tok-123", "handshake-bad-token"),
        ("subscribe", None, "1158201444", b"tok-123", "handshake-missing-token"),
        ("subscribe", "tök", "1158201444", b"tok-123", "handshake-bad-token"),
        ("subscribe", "tok-123", None, b"tok-123", "handshake-missing-challenge"),
        ("subscribe", "tok-123", "1", None, "no-secret-configured"),
    ],
)
def test_handshake(mode: str | None, token: str | None, challenge: str | None, expected: bytes | None,
                   reason: str | None) -> None:
    if reason is None:
        assert verify_handshake(mode, token, challenge, expected) == challenge
    else:
        with pytest.raises(VerificationFailed) as e:
            verify_handshake(mode, token, challenge, expected)
        assert e.value.reason == reason
