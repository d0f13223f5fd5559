from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from sandbox.spec_check import SpecRegistry
from sandbox.transport import sandbox_transport
from sandbox.world import World

META_TOKEN = "meta-token-acme"
WABA = "102290129340398"
PHONES = ("106540352242922", "106540352242923", "106540352242924")
NUKI_TOKEN = "nuki-token-acme"
LOCK = 17
HOSP_TOKEN = "hosp-token-acme"


class FakeClock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    w = World(clock=clock)
    w.meta.add_waba(META_TOKEN, WABA, "Acme Rentals")
    for i, phone in enumerate(PHONES):
        w.meta.add_phone_number(WABA, phone, f"+49 30 1234567{i}")
    w.nuki.add_smartlock(NUKI_TOKEN, LOCK, "Old Town 2")
    w.nuki.add_smartlock(NUKI_TOKEN, 18, "Old Town 3")
    return w


def client(world: World, base: str, **kwargs: object) -> httpx.Client:
    return httpx.Client(transport=sandbox_transport(world), base_url=f"http://sandbox{base}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def meta(world: World) -> Iterator[httpx.Client]:
    with client(world, "/meta/v23.0", headers={"Authorization": f"Bearer {META_TOKEN}"}) as c:
        yield c


@pytest.fixture
def nuki(world: World) -> Iterator[httpx.Client]:
    with client(world, "/nuki", headers={"Authorization": f"Bearer {NUKI_TOKEN}"}) as c:
        yield c


@pytest.fixture(scope="session")
def specs() -> SpecRegistry:
    registry = SpecRegistry()
    if not (registry.directory / "nuki-web-api-4.4.1.swagger.json").exists():
        if os.environ.get("CI"):
            pytest.fail(f"provider specs not found in {registry.directory}: CI must check conformance")
        pytest.skip(f"provider specs not found in {registry.directory}")
    return registry
