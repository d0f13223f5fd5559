from __future__ import annotations

import concurrent.futures
import contextlib

import httpx
import pytest

from sandbox.faults import FaultConfig, FaultInjector
from sandbox.transport import sandbox_transport
from sandbox.world import World
from tests.sandbox.conftest import META_TOKEN, NUKI_TOKEN, WABA


def _outcomes(world: World, config: FaultConfig, n: int = 40) -> list[str]:
    out = []
    with httpx.Client(
        transport=sandbox_transport(world, faults=config),
        base_url="http://sandbox/meta/v23.0",
        headers={"Authorization": f"Bearer {META_TOKEN}"},
    ) as c:
        for _ in range(n):
            try:
                out.append(str(c.get(f"/{WABA}/subscribed_apps").status_code))
            except httpx.TimeoutException:
                out.append("timeout")
            except httpx.TransportError:
                out.append("reset")
    return out


def test_same_seed_same_faults_and_rate_zero_none(world: World) -> None:
    config = FaultConfig(rate=0.5, kinds=frozenset({"429", "500", "timeout", "reset"}), seed=7)
    first = _outcomes(world, config)
    assert first == _outcomes(world, config)
    assert {"429", "500", "timeout", "reset", "200"} == set(first)
    assert first != _outcomes(world, FaultConfig(rate=0.5, kinds=config.kinds, seed=8))
    assert set(_outcomes(world, FaultConfig(rate=0.0))) == {"200"}


def test_decisions_do_not_depend_on_thread_interleaving() -> None:
    config = FaultConfig(rate=0.3, seed=1)
    keys = [("meta", "GET", f"/meta/v23.0/{i % 5}") for i in range(200)]
    serial = FaultInjector(config)
    expected = [serial.decide(*k) for k in keys]
    threaded = FaultInjector(config)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        per_key = list(pool.map(lambda k: (k, threaded.decide(*k)), keys))
    assert sorted(map(str, (d for _, d in per_key))) == sorted(map(str, expected))


def test_429_carries_retry_after_and_the_provider_shape(world: World) -> None:
    config = FaultConfig(rate=1.0, kinds=frozenset({"429"}), retry_after_s=3)
    with httpx.Client(transport=sandbox_transport(world, faults=config), base_url="http://sandbox") as c:
        meta = c.get(f"/meta/v23.0/{WABA}/subscribed_apps", headers={"Authorization": f"Bearer {META_TOKEN}"})
        nuki = c.get("/nuki/smartlock", headers={"Authorization": f"Bearer {NUKI_TOKEN}"})
    assert (meta.status_code, meta.headers["Retry-After"], meta.json()["error"]["code"]) == (429, "3", 4)
    assert (nuki.status_code, nuki.headers["Retry-After"]) == (429, "3")
    assert "detailMessage" in nuki.json()


def test_failed_writes_change_nothing_but_a_lost_response_does(world: World) -> None:
    body = {"override_callback_uri": "https://h.example/a", "verify_token": "t"}
    for kind in ("500", "timeout", "reset", "429"):
        config = FaultConfig(rate=1.0, kinds=frozenset({kind}))
        with httpx.Client(
            transport=sandbox_transport(world, faults=config),
            base_url="http://sandbox/meta/v23.0",
            headers={"Authorization": f"Bearer {META_TOKEN}"},
        ) as c, contextlib.suppress(httpx.TransportError):
            c.post(f"/{WABA}/subscribed_apps", json=body)
        assert world.meta.wabas[WABA].subscriptions == {}, kind
    config = FaultConfig(rate=1.0, kinds=frozenset({"lost-response"}))
    with (
        httpx.Client(
            transport=sandbox_transport(world, faults=config),
            base_url="http://sandbox/meta/v23.0",
            headers={"Authorization": f"Bearer {META_TOKEN}"},
        ) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.post(f"/{WABA}/subscribed_apps", json=body)
    assert world.meta.wabas[WABA].subscriptions != {}
    assert world.calls.writes("meta")[-1].fault == "lost-response"


def test_faults_can_target_one_provider(world: World) -> None:
    config = FaultConfig(rate=1.0, kinds=frozenset({"500"}), providers=frozenset({"nuki"}))
    assert set(_outcomes(world, config, n=5)) == {"200"}


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
    with pytest.raises(ValueError, match="kinds"):
        FaultConfig(rate=0.1, kinds=frozenset({"teapot"}))
