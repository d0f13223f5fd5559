"""`GET /admin/webhook-logs`: bearer token, filters, paging; absent when no token is configured."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon.testing
import pytest

from store.engine import make_engine
from store.migrate import upgrade
from store.webhook_log import DirectEventStore, WebhookRecord
from tenancy.settings import Settings
from webhook_server.app import create_app
from webhook_server.routing import build_routing
from webhook_server.storage import EngineLogReader

from .conftest import make_settings
from .helpers import ADMIN_TOKEN, FixedClock, tenants

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin(tmp_path: Any) -> Callable[..., falcon.testing.TestClient]:
    url = f"sqlite:///{tmp_path}/t.db"
    upgrade(url)
    engine = make_engine(url)
    store = DirectEventStore(engine)
    for i in range(5):
        store.record(WebhookRecord(received_at=T0 + timedelta(minutes=i), tenant="acme" if i % 2 else "blue-harbor",
                                   provider="hospitable", outcome="accepted" if i < 3 else "rejected",
                                   status_code=200 if i < 3 else 401, event_id=f"e{i}", body_size=2, body="{}"))

    def make(**overrides: Any) -> falcon.testing.TestClient:
        s: Settings = make_settings(**overrides)
        return falcon.testing.TestClient(create_app(build_routing(tenants()), store, s, FixedClock(),
                                                    reader=EngineLogReader(engine)))

    yield make
    engine.dispose()


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_lists_newest_first_with_paging(admin: Callable[..., falcon.testing.TestClient]) -> None:
    c = admin()
    first = c.simulate_get("/admin/webhook-logs", params={"limit": 2}, headers=AUTH).json
    assert [i["event_id"] for i in first["items"]] == ["e4", "e3"]
    second = c.simulate_get("/admin/webhook-logs", params={"limit": 2, "cursor": first["next_cursor"]},
                            headers=AUTH).json
    assert [i["event_id"] for i in second["items"]] == ["e2", "e1"]


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"tenant": "acme"}, ["e3", "e1"]),
        ({"outcome": "rejected"}, ["e4", "e3"]),
        ({"provider": "nuki"}, []),
        ({"since": (T0 + timedelta(minutes=3)).isoformat()}, ["e4", "e3"]),
        ({"until": "2026-11-27T12:01:00"}, ["e0"]),
    ],
)
def test_filters(admin: Callable[..., falcon.testing.TestClient], params: dict[str, str], ids: list[str]) -> None:
    r = admin().simulate_get("/admin/webhook-logs", params=params, headers=AUTH)
    assert r.status_code == 200
    assert [i["event_id"] for i in r.json["items"]] == ids


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN}x",
                                  "Bearer é"])
def test_needs_the_token(admin: Callable[..., falcon.testing.TestClient], auth: str | None) -> None:
    r = admin().simulate_get("/admin/webhook-logs", headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401
    assert ADMIN_TOKEN not in r.text


def test_absent_without_a_configured_token(admin: Callable[..., falcon.testing.TestClient]) -> None:
    r = admin(admin_token=None).simulate_get("/admin/webhook-logs", headers=AUTH)
    assert r.status_code == 404


@pytest.mark.parametrize("params", [{"outcome": "maybe"}, {"since": "yesterday"}, {"limit": "0"}])
def test_bad_filters_are_400(admin: Callable[..., falcon.testing.TestClient], params: dict[str, str]) -> None:
    assert admin().simulate_get("/admin/webhook-logs", params=params, headers=AUTH).status_code == 400


def test_wrong_tokens_to_the_api_are_counted_with_the_pages_and_refused_past_the_limit(
        admin: Callable[..., falcon.testing.TestClient]) -> None:
    c = admin()
    wrong = {"Authorization": "Bearer not-the-admin-token-0000"}
    answers = [c.simulate_get("/admin/webhook-logs", headers=wrong).status_code for _ in range(10)]
    assert answers == [401] * 10
    limited = c.simulate_get("/admin/webhook-logs", headers=wrong)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert c.simulate_get("/admin/logs", headers=wrong).status_code == 429  # one count for the API and the pages
    assert c.simulate_get("/admin/webhook-logs", headers=AUTH).status_code == 429  # until the window ends


def test_readyz_with_a_database(admin: Callable[..., falcon.testing.TestClient]) -> None:
    r = admin().simulate_get("/readyz")
    assert r.status_code == 200
    assert r.json == {"ready": True, "tenants": 3, "routing_loaded": True, "database": "ok"}



def test_the_view_shows_the_start_of_a_body_the_store_keeps_whole(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/big.db"
    upgrade(url)
    engine = make_engine(url)
    body = '{"pad":"' + "x" * 100_000 + '"}'
    DirectEventStore(engine).record(WebhookRecord(received_at=T0, tenant="acme", provider="hospitable",
                                                  outcome="accepted", status_code=200, event_id="big",
                                                  body_size=len(body), body=body))
    client = falcon.testing.TestClient(create_app(build_routing(tenants()), DirectEventStore(engine),
                                                  make_settings(), FixedClock(), reader=EngineLogReader(engine)))
    [item] = client.simulate_get("/admin/webhook-logs", headers=AUTH).json["items"]
    assert item["body_truncated"] and item["body"] == body[:65_536] and item["body_size"] == len(body)
    assert item["delivery_state"] == "pending"
    with engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT length(body) FROM webhook_log")).scalar_one() == len(body)
    engine.dispose()


def test_the_log_api_filters_by_delivery_state_in_the_query_and_refuses_unknown_states_and_parameters(
        tmp_path: Any) -> None:
    """`state` takes the values of `webhooks log --state`, repeatable; filtered in SQL, so `limit` counts only the
    matching events (the dead one is found behind newer ones). An unknown state, or an unknown parameter (a
    misspelt filter), is a 400 naming it, never the unfiltered log."""
    from sqlalchemy import update

    from store.schema import webhook_log

    url = f"sqlite:///{tmp_path}/s.db"
    upgrade(url)
    engine = make_engine(url)
    try:
        store = DirectEventStore(engine)
        for i in range(4):
            store.record(WebhookRecord(received_at=T0 + timedelta(minutes=i), tenant="acme", provider="hospitable",
                                       outcome="accepted", status_code=200, event_id=f"s{i}", body_size=2, body="{}"))
        with engine.begin() as conn:
            for event_id, state in (("s0", "dead"), ("s1", "retrying"), ("s2", "delivered")):  # s3 stays pending
                conn.execute(update(webhook_log).where(webhook_log.c.event_id == event_id)
                             .values(delivery_state=state))
        c = falcon.testing.TestClient(create_app(build_routing(tenants()), store, make_settings(), FixedClock(),
                                                 reader=EngineLogReader(engine)))

        def ids(query: str) -> list[str]:
            r = c.simulate_get("/admin/webhook-logs", query_string=query, headers=AUTH)
            assert r.status_code == 200, r.text
            return [i["event_id"] for i in r.json["items"]]

        assert ids("state=dead&limit=1") == ["s0"]
        assert ids("state=pending&state=retrying") == ["s3", "s1"]
        assert ids("state=delivered&tenant=acme") == ["s2"]
        for query, named in (("state=stuck", "state: one of pending, retrying, delivered, dead"),
                             ("stat=dead", "unknown parameter 'stat'"),
                             ("state=dead&Tenant=acme", "unknown parameter 'Tenant'")):
            r = c.simulate_get("/admin/webhook-logs", query_string=query, headers=AUTH)
            assert r.status_code == 400 and named in r.json["description"], (query, r.text)
        # Only with the token: an unknown parameter tells nobody anything before it.
        assert c.simulate_get("/admin/webhook-logs", query_string="stat=dead").status_code == 401
    finally:
        engine.dispose()
