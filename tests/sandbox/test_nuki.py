from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.world import World
from tests.sandbox.conftest import LOCK, FakeClock, client

CODE = {
    "name": "Guest Müller",
    "type": 13,
    "code": 345678,
    "remoteAllowed": False,
    "allowedFromTime": 600,
    "allowedUntilTime": 1320,
    "allowedWeekDays": 127,
}


def _codes(nuki: httpx.Client, lock: int = LOCK) -> list[dict[str, Any]]:
    resp = nuki.get(f"/smartlock/{lock}/auth", params={"types": "13"})
    assert resp.status_code == 200
    result: list[dict[str, Any]] = resp.json()
    return result


def test_lists_smartlocks_of_the_token_account(nuki: httpx.Client) -> None:
    locks = nuki.get("/smartlock").json()
    assert [(lock["smartlockId"], lock["name"]) for lock in locks] == [(17, "Old Town 2"), (18, "Old Town 3")]
    assert {"accountId", "type", "serverState", "state"} <= set(locks[0])


def test_unknown_token_is_401_java_style(world: World) -> None:
    with client(world, "/nuki", headers={"Authorization": "Bearer nope"}) as c:
        resp = c.get("/smartlock")
    assert resp.status_code == 401
    assert "detailMessage" in resp.json()


def test_create_answers_204_and_becomes_visible_one_read_later(nuki: httpx.Client) -> None:
    assert nuki.put(f"/smartlock/{LOCK}/auth", json=CODE).status_code == 204
    assert _codes(nuki) == []  # the lock has not caught up yet
    [auth] = _codes(nuki)
    assert (auth["name"], auth["code"], auth["allowedFromTime"]) == ("Guest Müller", 345678, 600)
    assert nuki.get("/smartlock/auth", params={"types": "13"}).json() == [auth]


def test_zero_delay_applies_writes_immediately(world: World, nuki: httpx.Client) -> None:
    world.nuki.apply_after_reads = 0
    nuki.put(f"/smartlock/{LOCK}/auth", json=CODE)
    assert len(_codes(nuki)) == 1


def test_time_delay_applies_once_due(world: World, nuki: httpx.Client, clock: FakeClock) -> None:
    world.nuki.apply_after_reads, world.nuki.apply_after_s = 100, 5.0
    nuki.put(f"/smartlock/{LOCK}/auth", json=CODE)
    assert _codes(nuki) == []
    clock.now += 5
    assert len(_codes(nuki)) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (12345, 400),  # five digits
        (345670, 400),  # contains 0
        (123456, 400),  # starts with 12
        ("345678", 400),  # not a number
    ],
)
def test_keypad_code_rules(nuki: httpx.Client, code: object, status: int) -> None:
    resp = nuki.put(f"/smartlock/{LOCK}/auth", json=CODE | {"code": code})
    assert resp.status_code == status
    assert "code" in resp.json()["detailMessage"]


def test_duplicate_code_on_the_same_lock_conflicts_even_while_pending(nuki: httpx.Client) -> None:
    nuki.put(f"/smartlock/{LOCK}/auth", json=CODE)
    assert nuki.put(f"/smartlock/{LOCK}/auth", json=CODE | {"name": "x"}).status_code == 409
    assert nuki.put("/smartlock/18/auth", json=CODE).status_code == 204  # unique per lock only


def test_name_longer_than_32_is_refused(nuki: httpx.Client) -> None:
    resp = nuki.put(f"/smartlock/{LOCK}/auth", json=CODE | {"name": "x" * 33})
    assert resp.status_code == 400


def test_update_clears_fields_that_were_not_sent(world: World, nuki: httpx.Client) -> None:
    world.nuki.apply_after_reads = 0
    nuki.put(f"/smartlock/{LOCK}/auth", json=CODE)
    [auth] = _codes(nuki)
    assert nuki.post(f"/smartlock/{LOCK}/auth/{auth['id']}", json={"name": "Renamed"}).status_code == 204
    [after] = _codes(nuki)
    assert after["name"] == "Renamed"
    assert after["code"] == 345678
    assert (after["allowedFromTime"], after["allowedUntilTime"]) == (0, 0)


def test_delete_is_eventual_and_a_second_write_on_a_pending_auth_is_locked(nuki: httpx.Client) -> None:
    nuki.put(f"/smartlock/{LOCK}/auth", json=CODE)
    _codes(nuki)
    [auth] = _codes(nuki)
    assert nuki.delete(f"/smartlock/{LOCK}/auth/{auth['id']}").status_code == 204
    assert nuki.post(f"/smartlock/{LOCK}/auth/{auth['id']}", json={"name": "x"}).status_code == 423
    assert len(_codes(nuki)) == 1
    assert _codes(nuki) == []


def test_foreign_lock_is_forbidden(world: World) -> None:
    world.nuki.add_smartlock("other", 99, "Elsewhere")
    with client(world, "/nuki", headers={"Authorization": "Bearer other"}) as c:
        assert c.get(f"/smartlock/{LOCK}/auth").status_code == 403


def test_decentral_webhook_secret_only_on_create(nuki: httpx.Client, world: World) -> None:
    created = nuki.put(
        "/api/decentralWebhook",
        json={
            "webhookUrl": "https://hooks.example/nuki/acme",
            "webhookFeatures": ["DEVICE_AUTHS", "DEVICE_STATUS"],
        },
    )
    assert created.status_code == 200
    hook = created.json()
    assert hook["secret"]
    listed = nuki.get("/api/decentralWebhook").json()
    assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
    with client(world, "/nuki", headers={"Authorization": "Bearer other"}) as c:
        world.nuki.add_account("other")
        assert c.get("/api/decentralWebhook").json() == []  # scoped per account
    assert nuki.delete(f"/api/decentralWebhook/{hook['id']}").status_code == 204
    assert nuki.get("/api/decentralWebhook").json() == []


def test_decentral_webhook_must_be_https(nuki: httpx.Client) -> None:
    resp = nuki.put(
        "/api/decentralWebhook",
        json={"webhookUrl": "http://h.example/n", "webhookFeatures": ["DEVICE_AUTHS"]},
    )
    assert resp.status_code == 400
