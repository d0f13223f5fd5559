from __future__ import annotations

import concurrent.futures
import time

import httpx

from sandbox.faults import FaultConfig
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.sandbox.conftest import LOCK, META_TOKEN, NUKI_TOKEN, WABA


def test_world_round_trips_through_json(world: World) -> None:
    world.nuki.add_keypad_code(NUKI_TOKEN, LOCK, "Seeded", 345678)
    world.twon.add_device("gate", "u", "p")
    world.twon.add_user("gate", "Cleaner", owner="tenantctl", pin="4711")
    world.hospitable.add_property("h", "3fa85f64-5717-4562-b3fc-2c963f66afa6", "Loft")
    world.beds24.add_property("b", 1, "Old")
    world.meta.subscribe(WABA, override_callback_uri="https://h.example/a", verify_token="t")
    again = World.from_json(world.to_json())
    assert again.to_dict() == world.to_dict()
    assert (
        again.nuki.accounts[NUKI_TOKEN].smartlocks[LOCK].auths
        == world.nuki.accounts[NUKI_TOKEN].smartlocks[LOCK].auths
    )


def test_admin_state_reset_and_call_log(world: World) -> None:
    with httpx.Client(transport=sandbox_transport(world), base_url="http://sandbox") as c:
        dump = c.get("/_sandbox/state").json()
        assert WABA in dump["meta"]["wabas"]
        c.get(f"/meta/v23.0/{WABA}/subscribed_apps", headers={"Authorization": f"Bearer {META_TOKEN}"})
        c.post(f"/meta/v23.0/{WABA}/subscribed_apps", headers={"Authorization": f"Bearer {META_TOKEN}"})
        c.get("/nuki/smartlock", headers={"Authorization": f"Bearer {NUKI_TOKEN}"})
        log = c.get("/_sandbox/calls").json()
        assert log["counts"] == {"meta": 2, "nuki": 1}
        assert log["writes"] == {"meta": 1}
        assert log["calls"][1] == {
            "provider": "meta",
            "method": "POST",
            "status": 200,
            "fault": None,
            "path": f"/meta/v23.0/{WABA}/subscribed_apps",
        }
        assert c.delete("/_sandbox/calls").status_code == 204
        assert c.get("/_sandbox/calls").json()["calls"] == []
        assert c.post("/_sandbox/reset").status_code == 204
        assert c.get("/_sandbox/state").json()["meta"]["wabas"] == {}
        assert c.put("/_sandbox/state", json=dump).status_code == 200
        assert WABA in world.meta.wabas
        assert c.put("/_sandbox/state", json={"mars": {}}).status_code == 400


def test_served_mode_faults_via_admin(world: World) -> None:
    with httpx.Client(transport=sandbox_transport(world), base_url="http://sandbox") as c:
        config = FaultConfig(rate=1.0, kinds=frozenset({"500"}), providers=frozenset({"nuki"}))
        assert c.put("/_sandbox/faults", json=config.to_dict()).status_code == 200
        assert c.get("/nuki/smartlock", headers={"Authorization": f"Bearer {NUKI_TOKEN}"}).status_code == 500
        assert c.put("/_sandbox/faults", json=None).json() is None
        assert c.get("/nuki/smartlock", headers={"Authorization": f"Bearer {NUKI_TOKEN}"}).status_code == 200
        assert c.put("/_sandbox/faults", json={"rate": 2}).status_code == 400


def test_latency_overlaps_across_threads(world: World) -> None:
    transport = sandbox_transport(world, latency_s=0.05)
    with httpx.Client(
        transport=transport,
        base_url="http://sandbox/meta/v23.0",
        headers={"Authorization": f"Bearer {META_TOKEN}"},
    ) as c:
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: c.get(f"/{WABA}/phone_numbers").status_code, range(16)))
        elapsed = time.perf_counter() - started
    assert statuses == [200] * 16
    # Serial would take at least 0.8 s; overlapped 8 at a time, 0.1 s and what a loaded machine adds (0.45 s once
    # beside the whole suite): under 0.7 of serial is overlap all the same.
    assert elapsed < 16 * 0.05 * 0.7
