"""The fake platform's keys and mode (PUT /_platform/mode, shared by `sandbox serve` and `sandbox platform`): a
mode body that is not a finite, in-range mode is refused whole (400) and the mode in force stays; a mode taken is
one every delivery can be answered with and whose JSON any client can read."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from sandbox.platform import Platform

HOSTILE = [
    b'{"delay_s": NaN}', b'{"delay_s": Infinity}', b'{"delay_s": 1e400}', b'{"delay_s": 1e300}',
    b'{"fail_percent": NaN}', b'{"fail_percent": -Infinity}',
    b'{"fail_status": Infinity}', b'{"fail_status": 1e400}', b'{"fail_status": "503"}', b'{"fail_status": 503.9}',
    b'{"fail_status": true}', b'{"fail_status": null}',
    b'{"retry_after_s": "abc"}', b'{"retry_after_s": NaN}', b'{"retry_after_s": -5}', b'{"retry_after_s": [1]}',
    b'{"retry_after_s": 1e300}',
    b'{"down_for_s": Infinity}', b'{"down_for_s": NaN}', b'{"down_for_s": -5}', b'{"down_for_s": "10"}',
    b'{"down_for_s": {"a": 1}}', b'{"down_until": 1e300}', b'{"x": 1}', b'{"fail_percent": "50"}',
    b'[' * 100_000, b'{"fail_percent": 1' + b'0' * 5000 + b'}', b'\xff', b'"a string"', b'null',
]


@pytest.mark.parametrize("body", HOSTILE, ids=lambda b: b[:30].decode("latin-1"))
def test_a_mode_that_is_not_finite_and_in_range_is_refused_and_the_mode_in_force_stays(body: bytes) -> None:
    platform = Platform("")
    platform.set_mode(b'{"fail_percent": 25, "fail_status": 502}')
    with pytest.raises(ValueError):
        platform.set_mode(body)
    assert platform.mode.fail_percent == 25 and platform.mode.fail_status == 502
    assert platform.mode.delay_s == 0 and platform.mode.down_until == 0 and platform.mode.retry_after_s is None


def test_a_mode_taken_is_plain_json_and_answers_every_delivery() -> None:
    platform = Platform("")
    mode = platform.set_mode(b'{"fail_percent": 100, "fail_status": 503, "delay_s": 0.5, "retry_after_s": 7, '
                             b'"down_for_s": 0}')
    strict = json.loads(json.dumps(mode.to_dict()), parse_constant=lambda c: pytest.fail(f"{c} in the mode"))
    assert strict["fail_status"] == 503 and strict["retry_after_s"] == 7 and strict["delay_s"] == 0.5
    assert platform.mode.to_dict()["down_for_s"] == 0
    platform.keys = [b"k"]  # a delivery that verifies reaches the mode's answer
    sig = base64.b64encode(hmac.new(b"k", b"msg_1.1.{}", hashlib.sha256).digest()).decode()
    drawn, fail = platform.draw()
    status, headers = platform.answer("hospitable", {"webhook-id": "msg_1", "webhook-timestamp": "1",
                                                     "webhook-signature": f"v1,{sig}"}, b"{}", drawn, fail)
    assert (status, headers) == (503, {"Retry-After": "7"})


@pytest.mark.parametrize("secrets", ["whsec_!!!!", "whsec_====", "whsec_ !", "whsec_@@@@, whsec_"])
def test_a_secret_that_is_no_base64_is_no_key_and_a_delivery_signed_with_an_empty_key_is_refused(
        secrets: str) -> None:
    """A typo in TENANTCTL_DELIVERY_SECRETS decoded (leniently) to an empty key, with which anyone can sign."""
    platform = Platform(secrets)
    sig = base64.b64encode(hmac.new(b"", b"msg_1.1.{}", hashlib.sha256).digest()).decode()
    status, _ = platform.answer("hospitable", {"webhook-id": "msg_1", "webhook-timestamp": "1",
                                               "webhook-signature": f"v1,{sig}"}, b"{}", *platform.draw())
    assert status == 401
