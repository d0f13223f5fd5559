from __future__ import annotations

import httpx

from sandbox.world import World
from tests.sandbox.conftest import META_TOKEN, PHONES, WABA, FakeClock, client


def test_subscribe_with_override_then_read_back_without_the_verify_token(
    meta: httpx.Client, world: World
) -> None:
    assert meta.get(f"/{WABA}/subscribed_apps").json() == {"data": []}
    resp = meta.post(
        f"/{WABA}/subscribed_apps",
        json={"override_callback_uri": "https://hooks.example/acme", "verify_token": "s3cret"},
    )
    assert resp.json() == {"success": True}
    data = meta.get(f"/{WABA}/subscribed_apps").json()["data"]
    assert len(data) == 1
    assert data[0]["override_callback_uri"] == "https://hooks.example/acme"
    assert set(data[0]["whatsapp_business_api_data"]) == {"id", "name", "link"}
    assert "s3cret" not in meta.get(f"/{WABA}/subscribed_apps").text
    assert (
        world.meta.wabas[WABA].subscriptions[data[0]["whatsapp_business_api_data"]["id"]].verify_token
        == "s3cret"
    )


def test_form_encoded_subscribe_is_accepted(meta: httpx.Client) -> None:
    resp = meta.post(
        f"/{WABA}/subscribed_apps",
        data={"override_callback_uri": "https://hooks.example/a", "verify_token": "t"},
    )
    assert resp.json() == {"success": True}


def test_subscribe_without_override_clears_it_and_delete_unsubscribes(meta: httpx.Client) -> None:
    meta.post(
        f"/{WABA}/subscribed_apps", json={"override_callback_uri": "https://h.example/a", "verify_token": "t"}
    )
    meta.post(f"/{WABA}/subscribed_apps")
    assert "override_callback_uri" not in meta.get(f"/{WABA}/subscribed_apps").json()["data"][0]
    assert meta.delete(f"/{WABA}/subscribed_apps").json() == {"success": True}
    assert meta.get(f"/{WABA}/subscribed_apps").json() == {"data": []}


def test_override_needs_https_and_a_verify_token(meta: httpx.Client) -> None:
    for body in (
        {"override_callback_uri": "http://h.example/a", "verify_token": "t"},
        {"override_callback_uri": "https://h.example/a"},
    ):
        resp = meta.post(f"/{WABA}/subscribed_apps", json=body)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == 100


def test_phone_numbers_page_with_cursors(meta: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = f"/{WABA}/phone_numbers"
    pages = 0
    while url:
        body = meta.get(url).json()
        seen += [p["id"] for p in body["data"]]
        url = body["paging"].get("next")
        pages += 1
    assert seen == list(PHONES)
    assert pages == 2  # default page size 2
    first = meta.get(f"/{WABA}/phone_numbers", params={"limit": 1}).json()
    second = meta.get(
        f"/{WABA}/phone_numbers", params={"limit": 1, "after": first["paging"]["cursors"]["after"]}
    )
    assert second.json()["data"][0]["id"] == PHONES[1]


def test_phone_number_fields_and_webhook_override_lifecycle(meta: httpx.Client) -> None:
    phone = PHONES[0]
    body = meta.get(f"/{phone}", params={"fields": "display_phone_number,code_verification_status"}).json()
    assert body == {"display_phone_number": "+49 30 12345670", "code_verification_status": "VERIFIED", "id": phone}
    resp = meta.post(
        f"/{phone}",
        json={
            "webhook_configuration": {"override_callback_uri": "https://hooks.example/p", "verify_token": "t"}
        },
    )
    assert resp.json() == {"success": True}
    conf = meta.get(f"/{phone}", params={"fields": "webhook_configuration"}).json()["webhook_configuration"]
    assert conf["phone_number"] == "https://hooks.example/p"
    assert "application" in conf
    meta.post(f"/{phone}", json={"webhook_configuration": {"override_callback_uri": ""}})
    conf = meta.get(f"/{phone}", params={"fields": "webhook_configuration"}).json()["webhook_configuration"]
    assert "phone_number" not in conf


def test_a_field_the_spec_does_not_document_is_refused_with_code_100(meta: httpx.Client) -> None:
    listed = meta.get(f"/{WABA}/phone_numbers", params={"fields": "id,host_platform"}).json()["data"]
    assert listed[0] == {"host_platform": "CLOUD_API", "id": PHONES[0]}
    for path in (f"/{WABA}/phone_numbers", f"/{PHONES[0]}"):
        resp = meta.get(path, params={"fields": "id,platform_type"})
        assert resp.status_code == 400
        err = resp.json()["error"]
        assert err["code"] == 100
        assert "nonexisting field (platform_type)" in err["message"]


def test_unknown_object_is_code_100_with_trace_id(meta: httpx.Client) -> None:
    resp = meta.get("/999999")
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == 100
    assert err["fbtrace_id"] == resp.headers["x-fb-trace-id"]


def test_unknown_or_expired_token_is_190_and_foreign_waba_is_200(world: World) -> None:
    with client(world, "/meta/v23.0", headers={"Authorization": "Bearer nope"}) as c:
        resp = c.get(f"/{WABA}/subscribed_apps")
        assert (resp.status_code, resp.json()["error"]["code"]) == (401, 190)
    world.meta.add_waba("other-token", "555", "Other")
    with client(world, "/meta/v23.0", headers={"Authorization": "Bearer other-token"}) as c:
        resp = c.get(f"/{WABA}/subscribed_apps")
        assert (resp.status_code, resp.json()["error"]["code"]) == (403, 200)
        assert c.get(f"/{PHONES[0]}").json()["error"]["code"] == 200
    world.meta.expire_token(META_TOKEN)
    with client(world, "/meta/v23.0", headers={"Authorization": f"Bearer {META_TOKEN}"}) as c:
        assert c.get(f"/{WABA}/phone_numbers").json()["error"]["code"] == 190


def test_per_token_budget_answers_80007_with_retry_after_until_the_window_rolls(
    world: World, meta: httpx.Client, clock: FakeClock
) -> None:
    world.meta.call_budget, world.meta.budget_window_s = 2, 60.0
    assert meta.get(f"/{WABA}/phone_numbers").status_code == 200
    clock.now += 10
    assert meta.get(f"/{WABA}/phone_numbers").status_code == 200
    resp = meta.get(f"/{WABA}/phone_numbers")
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == 80007
    assert resp.headers["Retry-After"] == "50"
    clock.now += 50
    assert meta.get(f"/{WABA}/phone_numbers").status_code == 200
