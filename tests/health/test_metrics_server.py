"""`/metrics` of a real `tenantctl serve`: every family declared from the first scrape; refusals counted by
reason class (never the free text after it); the last routing reload's outcome and time, a refused reload
reading 0 while the previous routing keeps serving."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.health.conftest import Rehearsal

pytestmark = pytest.mark.slow

FAMILIES = ("tenantctl_webhook_requests_total", "tenantctl_webhook_latency_seconds", "tenantctl_webhook_refusals_total",
            "tenantctl_health_status", "tenantctl_last_accepted_event_timestamp_seconds", "tenantctl_store_read_ok",
            "tenantctl_build_info", "tenantctl_routing_reload_ok", "tenantctl_routing_reload_timestamp_seconds",
            "tenantctl_routing_tenants")


def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


def _value(text: str, sample: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


def test_every_family_is_declared_from_the_first_scrape(server: str) -> None:
    text = _metrics(server)
    for name in FAMILIES:
        assert f"# TYPE {name} " in text, name
    assert _value(text, 'tenantctl_webhook_latency_seconds_count{provider="hospitable"}') == 0.0
    assert _value(text, "tenantctl_routing_reload_ok") == 1.0
    assert _value(text, "tenantctl_routing_tenants") == 3.0
    at = _value(text, "tenantctl_routing_reload_timestamp_seconds")
    assert at is not None and abs(time.time() - at) < 120


def test_refusals_are_counted_by_reason_class_only(server: str) -> None:
    bad = httpx.post(f"{server}/api/webhooks/wa/t/acme", content=b'{"object":"whatsapp_business_account"}',
                     headers={"X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"})
    assert bad.status_code == 401
    httpx.post(f"{server}/api/webhooks/hospitable/t/no-such-tenant-xyz", content=b"{}",
               headers={"Content-Type": "application/json"})
    text = _metrics(server)
    assert _value(text, 'tenantctl_webhook_refusals_total{provider="whatsapp",reason="bad-signature"}') == 1.0
    assert _value(text, 'tenantctl_webhook_refusals_total{provider="hospitable",reason="unknown-tenant"}') == 1.0
    assert "no-such-tenant-xyz" not in text


def test_a_refused_reload_reads_0_and_the_previous_routing_keeps_serving(rehearsal: Rehearsal, server: str) -> None:
    before = _value(_metrics(server), "tenantctl_routing_reload_timestamp_seconds")
    (rehearsal.root / "examples" / "acme.yaml").write_text("slug: [not valid\n")
    assert rehearsal.server_pid is not None
    time.sleep(1.1)  # a later second than the first load's
    os.kill(rehearsal.server_pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while True:
        try:
            text = _metrics(server)
        except httpx.TransportError:
            text = ""
        if _value(text, "tenantctl_routing_reload_ok") == 0.0:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    after = _value(text, "tenantctl_routing_reload_timestamp_seconds")
    assert before is not None and after is not None and after > before
    assert _value(text, "tenantctl_routing_tenants") == 3.0
    assert httpx.get(f"{server}/readyz", timeout=5).status_code == 200
