from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.world import World
from tests.sandbox.conftest import client


@pytest.fixture
def device(world: World) -> Iterator[httpx.Client]:
    world.twon.add_device("gate", "api-user", "pw", serial_number="54-0000-0001")
    with client(world, "/2n/gate", auth=httpx.DigestAuth("api-user", "pw")) as c:
        yield c


def test_digest_auth_is_required_and_checked(world: World, device: httpx.Client) -> None:
    assert device.get("/api/system/info").json()["result"]["serialNumber"] == "54-0000-0001"
    with client(world, "/2n/gate") as anonymous:
        resp = anonymous.get("/api/system/info")
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Digest ")
    with client(world, "/2n/gate", auth=httpx.DigestAuth("api-user", "wrong")) as c:
        assert c.get("/api/system/info").status_code == 401
    with client(world, "/2n/gate", auth=httpx.BasicAuth("api-user", "pw")) as c:
        assert c.get("/api/system/info").status_code == 401


def test_directory_create_query_update_delete_by_owner(device: httpx.Client) -> None:
    created = device.put(
        "/api/dir/create",
        json={
            "users": [
                {"name": "Cleaner", "owner": "tenantctl", "access": {"pin": "4711", "code": ["1234567890"]}},
                {"name": "Landlord", "owner": "someone-else"},
            ]
        },
    ).json()
    assert created["success"] is True
    uuid = created["result"]["users"][0]["uuid"]
    stamp = created["result"]["users"][1]["timestamp"]
    assert device.put("/api/dir/update", json={"users": [{"uuid": uuid, "name": "Cleaning crew"}]}).json()[
        "success"
    ]
    changed = device.post("/api/dir/query", json={"iterator": {"timestamp": stamp}}).json()["result"]["users"]
    assert [(u["name"], u["access"]["pin"]) for u in changed] == [("Cleaning crew", "4711")]
    assert device.put("/api/dir/delete", json={"users": [{"owner": "tenantctl"}]}).json()["success"]
    names = [u["name"] for u in device.post("/api/dir/query", json={}).json()["result"]["users"]]
    assert names == ["Landlord"]


@pytest.mark.parametrize(
    ("path", "body", "code", "param"),
    [
        ("/api/dir/create", {}, 11, "users"),
        ("/api/dir/create", {"users": [{"name": "x", "access": {"pin": "12a"}}]}, 12, "users[0].access.pin"),
        ("/api/dir/update", {"users": [{"uuid": "missing", "name": "x"}]}, 14, "users[0].uuid"),
    ],
)
def test_errors_are_http_200_with_success_false(
    device: httpx.Client, path: str, body: object, code: int, param: str
) -> None:
    resp = device.put(path, json=body)
    assert resp.status_code == 200
    assert resp.json() == {
        "success": False,
        "error": {"code": code, "param": param, "description": resp.json()["error"]["description"]},
    }


def test_a_bad_entry_applies_nothing(device: httpx.Client) -> None:
    device.put("/api/dir/create", json={"users": [{"name": "ok"}, {"name": "bad", "access": {"pin": "x"}}]})
    assert device.post("/api/dir/query", json={}).json()["result"]["users"] == []
