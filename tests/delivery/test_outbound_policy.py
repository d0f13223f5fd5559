"""Outbound rules: allow-list, https only (plain http to loopback only when allowed), no redirects, a cap."""

from __future__ import annotations

import httpx
import pytest

from outbound.policy import OutboundBlocked, OutboundPolicy, allow_list, check_url, make_client, post

POLICY = OutboundPolicy(allowed_hosts=allow_list(["https://platform.example.com/in", "http://127.0.0.1:9/x"]),
                        allow_loopback_http=True, max_response_bytes=10)


@pytest.mark.parametrize(("url", "error"), [
    ("https://platform.example.com/in/hospitable", None),
    ("http://127.0.0.1:9/x", None),
    ("https://evil.example.com/in", "not allow-listed"),
    ("http://platform.example.com/in", "use https"),
    ("https://user:pw@platform.example.com/in", "credentials"),
    ("ftp://platform.example.com/in", "not an http"),
    ("https://127.0.0.1:10/x", "not allow-listed"),  # the port is part of the allow-listed host
])
def test_check_url(url: str, error: str | None) -> None:
    if error is None:
        check_url(POLICY, url)
    else:
        with pytest.raises(OutboundBlocked, match=error):
            check_url(POLICY, url)


def test_loopback_http_needs_the_policy_to_allow_it() -> None:
    strict = OutboundPolicy(allowed_hosts=POLICY.allowed_hosts)
    with pytest.raises(OutboundBlocked, match="use https"):
        check_url(strict, "http://127.0.0.1:9/x")


def test_a_redirect_is_an_answer_not_a_hop_and_the_body_is_capped() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/in/moved":
            return httpx.Response(307, headers={"location": "https://evil.example.com/"})
        return httpx.Response(200, content=b"x" * 1000)

    with make_client(POLICY, transport=httpx.MockTransport(handler)) as client:
        moved = post(client, POLICY, "https://platform.example.com/in/moved", content=b"{}", headers={})
        big = post(client, POLICY, "https://platform.example.com/in/big", content=b"{}", headers={})
    assert moved.status == 307 and seen == ["https://platform.example.com/in/moved",
                                            "https://platform.example.com/in/big"]
    assert big.status == 200 and big.body == b"x" * 10
