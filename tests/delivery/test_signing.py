"""Standard Webhooks signatures: what the worker signs, the published verifier accepts; rotation; bad secrets."""

from __future__ import annotations

import base64

import pytest
import standardwebhooks

from delivery.signing import BadSecret, secret_key, sign, verify
from delivery.worker import header_safe

NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = '{"id":"evt-1","data":{"name":"Zoë"}}'.encode()


def test_the_published_verifier_accepts_each_secret_during_a_rotation() -> None:
    keys = [secret_key(NEW), secret_key(OLD)]
    ts = int(__import__("time").time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": sign(keys, "msg_1", ts, BODY)}
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (NEW, OLD):
        assert standardwebhooks.Webhook(secret).verify(BODY, headers) == {"id": "evt-1", "data": {"name": "Zoë"}}
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(BODY, headers)


@pytest.mark.parametrize(("changed", "value"), [("id", "msg_2"), ("ts", 1), ("body", b"{}")])
def test_any_change_breaks_the_signature(changed: str, value: object) -> None:
    keys = [secret_key(NEW)]
    header = sign(keys, "msg_1", 1_700_000_000, BODY)
    args: dict[str, object] = {"msg_id": "msg_1", "timestamp": 1_700_000_000, "body": BODY}
    args[{"id": "msg_id", "ts": "timestamp", "body": "body"}[changed]] = value
    assert verify(keys, "msg_1", 1_700_000_000, BODY, header)
    assert not verify(keys, header=header, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["whsec_not*base64", "whsec_" + base64.b64encode(b"short").decode(), ""])
def test_a_bad_secret_is_refused_without_echoing_it(secret: str) -> None:
    with pytest.raises(BadSecret) as info:
        secret_key(secret)
    assert secret.removeprefix("whsec_") not in str(info.value) or not secret.removeprefix("whsec_")


@pytest.mark.parametrize(("secret", "says"), [
    ("abc", "does not start with whsec_"),
    ("whsec_not*base64", "not base64 after its whsec_ prefix"),
    ("whsec_" + base64.b64encode(b"k" * 23).decode(), "shorter than 24 bytes (it has 23)"),
    ("whsec_" + base64.b64encode(b"k" * 100).decode(), "longer than 64 bytes (it has 100)"),
])
def test_a_bad_secret_is_refused_saying_what_is_wrong(secret: str, says: str) -> None:
    """The key range is the Standard Webhooks one docs/delivery.md gives: 24 to 64 bytes."""
    with pytest.raises(BadSecret, match=r"use whsec_ \+ base64 of 24 to 64 random bytes") as info:
        secret_key(secret)
    assert says in str(info.value)


def test_a_key_of_24_or_64_bytes_is_taken_with_or_without_the_prefix() -> None:
    for n in (24, 64):
        key = base64.b64encode(b"k" * n).decode()
        assert secret_key("whsec_" + key) == secret_key(key) == b"k" * n


@pytest.mark.parametrize(("event_id", "sent"), [
    ("evt_01HQ-abc.123:x/y", "evt_01HQ-abc.123:x/y"),  # the usual ID, as it is
    ("a b", "a%20b"),
    ("100%", "100%25"),
    ("caf\u00e9", "caf%C3%A9"),
    ("a\r\nX-Evil: 1", "a%0D%0AX-Evil:%201"),
    ("a\x7fb", "a%7Fb"),
    ("x" * 600, "x" * 512),
])
def test_the_event_id_header_carries_printable_ascii_and_percent_encodes_the_rest(event_id: str, sent: str) -> None:
    assert header_safe(event_id) == sent
