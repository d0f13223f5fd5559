from __future__ import annotations

import uuid

from sandbox.world import World
from tests.sandbox.conftest import HOSP_TOKEN, FakeClock, client


def _seed(world: World, n: int) -> list[str]:
    ids = [str(uuid.UUID(int=i + 1)) for i in range(n)]
    for i, pid in enumerate(ids):
        world.hospitable.add_property(HOSP_TOKEN, pid, f"Flat {i}")
    return ids


def test_properties_page_by_meta_last_page_with_http_links_and_trace(world: World) -> None:
    ids = _seed(world, 12)
    seen: list[str] = []
    with client(world, "/hospitable/v2", headers={"Authorization": f"Bearer {HOSP_TOKEN}"}) as c:
        page, last = 1, 1
        while page <= last:
            resp = c.get("/properties", params={"page": page, "per_page": 5})
            assert resp.headers["X-hospitable-trace"]
            body = resp.json()
            seen += [p["id"] for p in body["data"]]
            last = body["meta"]["last_page"]
            assert body["links"]["first"].startswith("http://")
            page += 1
        assert (body["meta"]["total"], body["meta"]["per_page"], last) == (12, 5, 3)
        assert body["links"]["next"] is None
        assert len(c.get("/properties").json()["data"]) == 10  # default per_page
    assert seen == ids


def test_unknown_parameters_are_ignored_and_per_page_is_capped(world: World) -> None:
    _seed(world, 1)
    with client(world, "/hospitable/v2", headers={"Authorization": f"Bearer {HOSP_TOKEN}"}) as c:
        assert c.get("/properties", params={"colour": "blue"}).status_code == 200
        assert c.get("/properties", params={"per_page": 101}).status_code == 422


def test_hospitable_unknown_token_is_401_json_with_trace(world: World) -> None:
    with client(world, "/hospitable/v2", headers={"Authorization": "Bearer nope"}) as c:
        resp = c.get("/properties")
    assert resp.status_code == 401
    assert resp.json() == {"message": "Unauthenticated."}
    assert resp.headers["X-hospitable-trace"]


def test_beds24_properties_and_credit_headers(world: World, clock: FakeClock) -> None:
    world.beds24.add_property("b24", 4711, "Legacy House")
    world.beds24.credit_limit = 2
    with client(world, "/beds24/v2", headers={"token": "b24"}) as c:
        first = c.get("/properties")
        assert first.json()["data"] == [
            {
                "id": 4711,
                "name": "Legacy House",
                "propertyType": "apartment",
                "currency": "EUR",
                "roomTypes": [],
            }
        ]
        assert first.json()["success"] is True
        assert (first.headers["x-request-cost"], first.headers["x-five-min-limit-remaining"]) == ("1", "1")
        assert first.headers["x-five-min-limit-resets-in"] == "300"
        c.get("/properties")
        clock.now += 100
        over = c.get("/properties")
        assert over.status_code == 429
        assert over.headers["x-five-min-limit-resets-in"] == "200"
        clock.now += 200
        assert c.get("/properties").status_code == 200
    with client(world, "/beds24/v2", headers={"token": "bad"}) as c:
        assert c.get("/properties").status_code == 401
