"""The app-level WhatsApp callback on the real server (`tenantctl serve`, SQLite), as Meta and an operator
use it: the handshake with the platform token, account-level events routed by WABA and stored once, an
unknown WABA answered 200 and visible in `tenantctl webhooks log` and `stats`, a tenant added by SIGHUP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunCli

from .helpers import dumps, sign_meta, tenant_dicts
from .server_harness import Server, make_tenants_dir, start_server, write_tenant
from .test_whatsapp_examples import account_payload

pytestmark = pytest.mark.slow

PLATFORM_TOKEN = "platform-verify-token-4e1d90"
UNKNOWN_WABA = "555000111222333"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:2]),
                     TENANTCTL_META_VERIFY_TOKEN=PLATFORM_TOKEN)
    yield s
    s.stop()


def meta(c: httpx.Client, payload: dict[str, Any], path: str = "/api/webhooks/wa") -> httpx.Response:
    body = dumps(payload)
    return c.post(path, content=body, headers={"X-Hub-Signature-256": sign_meta(body),
                                               "Content-Type": "application/json"})


def test_the_app_callback_on_the_real_server(server: Server, cli: RunCli) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        ok = c.get("/api/webhooks/wa", params={"hub.mode": "subscribe", "hub.verify_token": PLATFORM_TOKEN,
                                                "hub.challenge": "8812"})
        assert (ok.status_code, ok.text) == (200, "8812")
        bad = c.get("/api/webhooks/wa", params={"hub.mode": "subscribe", "hub.verify_token": "guess",
                                                 "hub.challenge": "1"})
        assert bad.status_code == 403

        template = account_payload("message_template_status_update")  # acme's WABA
        assert meta(c, template).json() == {"status": "ok"}
        assert meta(c, template).json() == {"status": "duplicate"}  # Meta's retry
        assert meta(c, template, "/api/webhooks/wa/t/acme").json() == {"status": "duplicate"}
        assert meta(c, template, "/api/webhooks/wa/t/blue-harbor").status_code == 403

        unknown = meta(c, account_payload("account_update", UNKNOWN_WABA))
        assert unknown.json() == {"status": "ok"}

    env = {"TENANTCTL_STATE_DIR": str(server.state)}
    log = cli("webhooks", "log", "--provider", "whatsapp", "--format", "json", env=env)
    assert log.code == 0, log.all
    rows = json.loads(log.out)
    assert [(r["tenant"], r["outcome"], r["status_code"], r["reason"]) for r in reversed(rows)] == [
        (None, "accepted", 200, "handshake"),
        (None, "rejected", 403, "handshake-bad-token"),
        ("acme", "accepted", 200, None),
        ("acme", "duplicate", 200, None),
        ("acme", "duplicate", 200, None),
        ("blue-harbor", "rejected", 403, "cross-tenant:acme"),
        (None, "rejected", 200, f"unroutable:unknown-waba:{UNKNOWN_WABA}"),
    ]
    text = cli("webhooks", "log", "--rejected", env=env)
    assert f"unroutable:unknown-waba:{UNKNOWN_WABA}" in text.out
    stats = {(s["tenant"], s["provider"]): s for s in json.loads(
        cli("webhooks", "stats", "--format", "json", env=env).out)}
    assert (stats[("acme", "whatsapp")]["accepted"], stats[("acme", "whatsapp")]["duplicate"]) == (1, 2)
    assert stats[(None, "whatsapp")]["rejected"] == 2  # the refused handshake and the unroutable event


def test_a_waba_added_by_sighup_is_routed_after_the_reload(server: Server) -> None:
    waba = "102290129340777"
    event = account_payload("phone_number_quality_update", waba)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert meta(c, event).json() == {"status": "ok"}  # unroutable yet: recorded, answered 200
        write_tenant(server.tenants, {"slug": "delta", "display_name": "Delta",
                                      "whatsapp": {"business_account_id": waba, "verify_token": "delta-verify-1",
                                                   "access_token": "delta-wa-access-1"}})
        server.hup()
        server.wait_for_log("routing reloaded: 3 tenant(s)")
        deadline = time.monotonic() + 10
        while meta(c, event, "/api/webhooks/wa/t/delta").status_code != 200:
            assert time.monotonic() < deadline, "the new WABA was never routed"
            time.sleep(0.1)
        # Stored at delta's URL; the app callback now knows it too: Meta's retry is a duplicate.
        assert meta(c, event).json() == {"status": "duplicate"}
