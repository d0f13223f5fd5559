from __future__ import annotations

import httpx
import pytest

from sandbox.spec_check import SpecCheckingTransport, SpecRegistry, SpecViolationError
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.sandbox.conftest import LOCK, META_TOKEN, NUKI_TOKEN, PHONES, WABA


def _client(transport: httpx.BaseTransport, base: str, token: str) -> httpx.Client:
    return httpx.Client(
        transport=transport, base_url=f"http://sandbox{base}", headers={"Authorization": f"Bearer {token}"}
    )


def test_the_calls_the_reconciler_makes_pass_their_specs(world: World, specs: SpecRegistry) -> None:
    world.nuki.apply_after_reads = 0
    world.hospitable.add_property("h", "3fa85f64-5717-4562-b3fc-2c963f66afa6", "Loft")
    checked = SpecCheckingTransport(sandbox_transport(world), specs, strict=True)
    with _client(checked, "/meta/v23.0", META_TOKEN) as meta:
        body = meta.get(f"/{WABA}/phone_numbers").json()
        meta.get(body["paging"]["next"])
        meta.post(
            f"/{WABA}/subscribed_apps",
            json={"override_callback_uri": "https://h.example/a", "verify_token": "t"},
        )
        meta.get(f"/{WABA}/subscribed_apps")
        meta.post(
            f"/{PHONES[0]}",
            json={
                "webhook_configuration": {"override_callback_uri": "https://h.example/p", "verify_token": "t"}
            },
        )
        meta.get(f"/{PHONES[0]}", params={"fields": "webhook_configuration,display_phone_number"})
        meta.get(f"/{PHONES[0]}")
        meta.get("/999")  # documented error shape
        meta.delete(f"/{WABA}/subscribed_apps")
    with _client(checked, "/nuki", NUKI_TOKEN) as nuki:
        nuki.get("/smartlock")
        nuki.put(
            f"/smartlock/{LOCK}/auth",
            json={
                "name": "g",
                "type": 13,
                "code": 345678,
                "remoteAllowed": False,
                "allowedFromDate": "2026-01-01T00:00:00.000Z",
            },
        )
        [auth] = nuki.get(f"/smartlock/{LOCK}/auth", params={"types": "13"}).json()
        nuki.post(f"/smartlock/{LOCK}/auth/{auth['id']}", json={"name": "h", "code": 345679})
        nuki.delete(f"/smartlock/{LOCK}/auth/{auth['id']}")
        hook = nuki.put(
            "/api/decentralWebhook",
            json={"webhookUrl": "https://h.example/n", "webhookFeatures": ["DEVICE_AUTHS"]},
        ).json()
        nuki.get("/api/decentralWebhook")
        nuki.delete(f"/api/decentralWebhook/{hook['id']}")
    with _client(checked, "/hospitable/v2", "h") as hosp:
        hosp.get("/properties", params={"page": 1, "per_page": 100})
    assert checked.violations == []
    assert checked.checked == 18
    assert specs.load_seconds["meta"] < 5


def test_a_malformed_meta_response_is_reported(world: World, specs: SpecRegistry) -> None:
    world.meta.phones[PHONES[0]].status = "CONNECTED"  # outside the spec's enum
    checked = SpecCheckingTransport(sandbox_transport(world), specs)
    with _client(checked, "/meta/v23.0", META_TOKEN) as meta:
        assert meta.get(f"/{WABA}/phone_numbers").status_code == 200
    [violation] = checked.violations
    assert (violation.provider, violation.phase) == ("meta", "response")
    assert "data/0/status" in violation.message


def test_malformed_requests_are_reported_and_strict_mode_raises(world: World, specs: SpecRegistry) -> None:
    checked = SpecCheckingTransport(sandbox_transport(world), specs)
    with _client(checked, "/nuki", NUKI_TOKEN) as nuki:
        nuki.put(f"/smartlock/{LOCK}/auth", json={"type": 13, "code": "345678"})
    assert {v.phase for v in checked.violations} == {"request"}
    strict = SpecCheckingTransport(sandbox_transport(world), specs, strict=True)
    with _client(strict, "/meta/v23.0", META_TOKEN) as meta, pytest.raises(SpecViolationError) as exc:
        meta.post(f"/{WABA}/subscribed_apps", json={"override_callback_uri": 5})
    assert "override_callback_uri" in str(exc.value)


def test_violation_messages_do_not_echo_secrets(world: World, specs: SpecRegistry) -> None:
    checked = SpecCheckingTransport(sandbox_transport(world), specs)
    with _client(checked, "/meta/v23.0", META_TOKEN) as meta:
        meta.post(
            f"/{PHONES[0]}",
            json={"webhook_configuration": {"override_callback_uri": 7, "verify_token": "hush-hush"}},
        )
    assert checked.violations
    assert all("hush-hush" not in str(v) for v in checked.violations)
