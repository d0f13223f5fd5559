"""The log keeps the TCP peer of every request; X-Forwarded-For / X-Real-IP count only when that peer is a
configured trusted proxy (TENANTCTL_FORWARDED_ALLOW_IPS). Through the real server."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from webhook_server.client_address import TrustedProxies

from .helpers import SECRETS, dumps, sign_hex, tenant_dicts
from .server_harness import make_tenants_dir, start_server

FORWARDED = {"X-Forwarded-For": "6.6.6.6, 10.0.0.7", "X-Real-IP": "7.7.7.7"}


@pytest.mark.parametrize(("trusted", "expected"), [
    # Not a trusted proxy: its forwarded headers are the sender's words, not kept as an address.
    ("10.1.2.3", {"peer": "127.0.0.1", "client": "127.0.0.1"}),
    # A trusted proxy: the right-most address it did not add itself is the client.
    ("127.0.0.1", {"peer": "127.0.0.1", "client": "10.0.0.7", "x-forwarded-for": "6.6.6.6, 10.0.0.7",
                   "x-real-ip": "7.7.7.7"}),
    ("127.0.0.1, 10.0.0.0/8", {"peer": "127.0.0.1", "client": "6.6.6.6",
                               "x-forwarded-for": "6.6.6.6, 10.0.0.7", "x-real-ip": "7.7.7.7"}),
])
def test_the_peer_is_always_logged_and_forwarded_headers_only_from_trusted_proxies(
        tmp_path: Path, trusted: str, expected: dict[str, str]) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                          TENANTCTL_FORWARDED_ALLOW_IPS=trusted)
    try:
        body = dumps({"id": "evt-addr", "action": "reservation.created"})
        with httpx.Client(base_url=server.url, timeout=10) as c:
            r = c.post("/api/webhooks/hospitable/t/acme", content=body, headers={
                **FORWARDED, "Signature": sign_hex(SECRETS["acme"]["hospitable"], body)})
            assert r.status_code == 200
            assert c.post("/api/webhooks/hospitable/t/nobody", content=b"{}", headers=FORWARDED).status_code == 404
    finally:
        server.stop()
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        logged = [json.loads(h) for (h,) in conn.execute("SELECT headers FROM webhook_log ORDER BY id")]
    for headers in logged:  # accepted and refused alike
        assert {k: v for k, v in headers.items() if k in ("peer", "client", *map(str.lower, FORWARDED))} == expected


def test_an_answer_about_an_address_does_not_depend_on_what_was_asked_before() -> None:
    proxies, others = TrustedProxies.parse("10.0.0.0/8"), TrustedProxies.parse("192.168.1.1")
    for _ in range(2):  # the second time from the cache
        assert proxies.trusts("10.1.2.3") and not others.trusts("10.1.2.3")
        assert others.trusts("192.168.1.1") and not proxies.trusts("192.168.1.1")
        assert not proxies.trusts("10.1.2.3" + " " * 100 + "x") and not proxies.trusts(None)
