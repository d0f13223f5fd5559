"""A real `tenantctl serve` on the rehearsal's database: `simulate booking` is accepted and recorded, a health
run sees it, and `/metrics` shows build info from the start, then the last health status and the last
accepted event per tenant and provider."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.health.conftest import ADMIN, APP_SECRET, Rehearsal, row

pytestmark = pytest.mark.slow



def _metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


def test_simulate_booking_is_accepted_and_seen_by_health_and_metrics(rehearsal: Rehearsal, server: str) -> None:
    first = _metrics(server)
    assert "tenantctl_build_info{" in first  # non-empty from start
    assert 'tenantctl_last_accepted_event_timestamp_seconds{provider="hospitable",tenant="acme"}' not in first

    env = {"TENANTCTL_META_APP_SECRETS": APP_SECRET, "TENANTCTL_ADMIN_TOKEN": ADMIN}
    sim = rehearsal.run("simulate", "booking", "acme", "--server", server, env=env)
    assert sim.code == 0, sim.all
    assert "hospitable: accepted tenantctl-sim-" in sim.out and "whatsapp: accepted wamid." in sim.out
    assert sim.out.count("recorded as accepted in the webhook log") == 2
    assert APP_SECRET not in sim.all and ADMIN not in sim.all

    _, doc = rehearsal.health_json("-t", "acme", "-p", "hospitable", "-p", "whatsapp")
    assert row(doc, "hospitable.webhook[acme]")["health"] == "healthy"
    assert "1 accepted in 24 h" in row(doc, "whatsapp.inbound[acme]")["detail"]

    text = _metrics(server)
    assert 'tenantctl_last_accepted_event_timestamp_seconds{provider="hospitable",tenant="acme"}' in text
    assert 'tenantctl_health_status{provider="hospitable",status="healthy",tenant="acme"} 1.0' in text
    assert 'tenantctl_health_status{provider="hospitable",status="degraded",tenant="acme"} 0.0' in text
    assert "tenantctl_store_read_ok 1.0" in text


def test_simulate_reports_a_refusal_and_exits_1(rehearsal: Rehearsal, server: str) -> None:
    sim = rehearsal.run("simulate", "booking", "acme", "--server", server,
                        env={"TENANTCTL_META_APP_SECRETS": "not-the-app-secret-000", "TENANTCTL_ADMIN_TOKEN": ADMIN})
    assert sim.code == 1
    assert "hospitable: accepted" in sim.out and "whatsapp: refused, HTTP 401" in sim.out


def test_a_stale_tenant_shows_degraded_in_metrics(rehearsal: Rehearsal, server: str) -> None:
    rehearsal.record("acme", "hospitable", age=timedelta(days=30))
    rehearsal.health_json("-t", "acme", "-p", "hospitable")
    assert 'tenantctl_health_status{provider="hospitable",status="degraded",tenant="acme"} 1.0' in _metrics(server)
