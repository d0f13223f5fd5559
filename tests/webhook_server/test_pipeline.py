"""The webhook pipeline through the Falcon app: every refusal path, de-duplication, 503 on an outage."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from .helpers import (
    ACME_PHONE,
    BLUE_PHONE,
    OLD_APP_SECRET,
    SECRETS,
    FakeStore,
    dumps,
    sign_hex,
    sign_meta,
    wa_payload,
)

A = SECRETS["acme"]
HOSP_BODY = dumps({"id": "evt-1", "action": "reservation.created", "data": {}})
NUKI_BODY = dumps({"feature": "DEVICE_STATUS", "smartlockId": 17010001})
BEDS_BODY = dumps({"timeStamp": "2026-11-27T10:00:00Z", "booking": {"id": 42}})


def post(client: falcon.testing.TestClient, path: str, body: bytes, **headers: str) -> falcon.testing.Result:
    return client.simulate_post(path, body=body, headers={"Content-Type": "application/json", **headers})


def hosp(client: falcon.testing.TestClient, body: bytes = HOSP_BODY, secret: str = A["hospitable"],
         header: str = "Signature", slug: str = "acme") -> falcon.testing.Result:
    return post(client, f"/api/webhooks/hospitable/t/{slug}", body, **{header: sign_hex(secret, body)})


def wa(client: falcon.testing.TestClient, payload: dict[str, Any], slug: str = "acme",
       secret: str | None = None) -> falcon.testing.Result:
    body = dumps(payload)
    sig = sign_meta(body) if secret is None else sign_meta(body, secret)
    return post(client, f"/api/webhooks/wa/t/{slug}", body, **{"X-Hub-Signature-256": sig})


# -- accepted ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("send", "provider", "event_id"),
    [
        (hosp, "hospitable", "evt-1"),
        (lambda c: hosp(c, header="X-Hospitable-Signature"), "hospitable", "evt-1"),
        (lambda c: hosp(c, secret=A["hospitable_prev"]), "hospitable", "evt-1"),  # rotation
        (lambda c: wa(c, wa_payload(ACME_PHONE, "wamid.X")), "whatsapp", "msg:wamid.X"),
        (lambda c: wa(c, wa_payload(ACME_PHONE, "wamid.X"), secret=OLD_APP_SECRET), "whatsapp", "msg:wamid.X"),
        (lambda c: post(c, "/api/webhooks/nuki/t/acme", NUKI_BODY,
                        **{"X-Nuki-Signature-SHA256": sign_hex(A["nuki"], NUKI_BODY)}), "nuki", None),
        (lambda c: post(c, "/api/webhooks/beds24/t/acme", BEDS_BODY,
                        **{"X-Tenantctl-Secret": A["beds24"]}), "beds24", None),
    ],
)
def test_signed_webhooks_are_accepted_and_recorded(client: falcon.testing.TestClient, store: FakeStore,
                                                   send: Callable[..., falcon.testing.Result], provider: str,
                                                   event_id: str | None) -> None:
    r = send(client)
    assert r.status_code == 200, r.text
    rec = store.last
    assert (rec.outcome, rec.tenant, rec.provider, rec.status_code) == ("accepted", "acme", provider, 200)
    assert rec.event_id is not None
    if event_id:
        assert rec.event_id == event_id
    assert rec.body is not None and rec.body_size == len(rec.body.encode())
    assert rec.latency_ms is not None and rec.latency_ms >= 0


def test_a_replayed_event_answers_200_and_is_stored_once(client: falcon.testing.TestClient,
                                                         store: FakeStore) -> None:
    assert hosp(client).status_code == 200
    again = hosp(client)
    assert again.status_code == 200
    assert again.json == {"status": "duplicate"}
    assert [r.outcome for r in store.records] == ["accepted", "duplicate"]
    assert store.records[1].body is None


def test_only_safe_headers_are_recorded(client: falcon.testing.TestClient, store: FakeStore) -> None:
    post(client, "/api/webhooks/beds24/t/acme", BEDS_BODY, **{
        "X-Tenantctl-Secret": A["beds24"], "User-Agent": "Beds24", "X-Request-Id": "req-1",
        "Authorization": "Bearer something-secret", "Cookie": "a=b", "X-Forwarded-For": "38.80.170.1",
    })
    assert store.last.headers == {"content-type": "application/json", "content-length": str(len(BEDS_BODY)),
                                  "user-agent": "Beds24", "x-request-id": "req-1",
                                  "x-forwarded-for": "38.80.170.1",  # the test client's peer is trusted
                                  "peer": "127.0.0.1", "client": "38.80.170.1"}


def test_an_accepted_body_is_stored_whole(make_client: Callable[..., falcon.testing.TestClient],
                                          store: FakeStore) -> None:
    client = make_client()
    assert hosp(client).status_code == 200
    assert store.last.body == HOSP_BODY.decode()
    assert store.last.body_size == len(HOSP_BODY)


# -- refused -------------------------------------------------------------------------------------------

def _oversized_stream(client: falcon.testing.TestClient) -> falcon.testing.Result:
    # No Content-Length: only the capped read can tell the body is too large.
    body = dumps({"id": "big", "pad": "x" * 5000})
    return client.simulate_request("POST", "/api/webhooks/hospitable/t/acme",
                                   headers={"Signature": sign_hex(A["hospitable"], body)},
                                   body=body, extras={"CONTENT_LENGTH": ""})


REFUSALS: list[tuple[str, Callable[[falcon.testing.TestClient], falcon.testing.Result], int, str | None,
                     str]] = [
    ("unknown tenant", lambda c: hosp(c, slug="nobody"), 404, None, "unknown-tenant:nobody"),
    ("provider not configured (nuki without webhook secret)",
     lambda c: post(c, "/api/webhooks/nuki/t/blue-harbor", NUKI_BODY,
                    **{"X-Nuki-Signature-SHA256": sign_hex("x", NUKI_BODY)}), 404, "blue-harbor",
     "provider-not-configured"),
    ("provider not configured (no hospitable)", lambda c: hosp(c, slug="casa-sol"), 404, "casa-sol",
     "provider-not-configured"),
    ("body too large by Content-Length",
     lambda c: post(c, "/api/webhooks/hospitable/t/acme", b"x" * 5000, Signature="0" * 64), 413, "acme",
     "body-too-large"),
    ("body too large without Content-Length", _oversized_stream, 413, "acme", "body-too-large"),
    ("missing signature", lambda c: post(c, "/api/webhooks/hospitable/t/acme", HOSP_BODY), 401, "acme",
     "missing-signature"),
    ("malformed signature", lambda c: post(c, "/api/webhooks/hospitable/t/acme", HOSP_BODY, Signature="zz"),
     401, "acme", "malformed-signature"),
    ("another tenant's secret", lambda c: hosp(c, secret=SECRETS["blue-harbor"]["hospitable"]), 401, "acme",
     "bad-signature"),
    ("nuki bad signature", lambda c: post(c, "/api/webhooks/nuki/t/acme", NUKI_BODY,
                                          **{"X-Nuki-Signature-SHA256": sign_hex("wrong", NUKI_BODY)}),
     401, "acme", "bad-signature"),
    ("beds24 without secret header", lambda c: post(c, "/api/webhooks/beds24/t/acme", BEDS_BODY), 401, "acme",
     "missing-secret-header"),
    ("beds24 with another tenant's secret",
     lambda c: post(c, "/api/webhooks/beds24/t/acme", BEDS_BODY,
                    **{"X-Tenantctl-Secret": SECRETS["blue-harbor"]["beds24"]}), 401, "acme", "bad-secret-header"),
    ("whatsapp signed with a tenant secret instead of the app secret",
     lambda c: post(c, "/api/webhooks/wa/t/acme", dumps(wa_payload()),
                    **{"X-Hub-Signature-256": sign_meta(dumps(wa_payload()), A["hospitable"])}), 401, "acme",
     "bad-signature"),
    ("invalid JSON", lambda c: hosp(c, body=b"{not json"), 400, "acme", "invalid-json"),
    ("JSON that is not an object", lambda c: hosp(c, body=b"[1,2]"), 400, "acme", "json-not-an-object"),
    ("whatsapp for another tenant's number", lambda c: wa(c, wa_payload(BLUE_PHONE)), 403, "acme",
     "cross-tenant:blue-harbor"),
    ("whatsapp for an unknown number", lambda c: wa(c, wa_payload("999999999")), 403, "acme",
     "cross-tenant:unknown-phone-number-id"),
    ("whatsapp without a routing key", lambda c: wa(c, {"object": "x", "entry": []}), 403, "acme",
     "missing-routing-key"),
    ("whatsapp with one foreign change among ours",
     lambda c: wa(c, {"entry": [*wa_payload(ACME_PHONE)["entry"], *wa_payload(BLUE_PHONE)["entry"]]}), 403,
     "acme", "cross-tenant:blue-harbor"),
    ("whatsapp tenant without a phone number ID", lambda c: wa(c, wa_payload(ACME_PHONE), slug="casa-sol"),
     403, "casa-sol", "cross-tenant:acme"),
]


@pytest.mark.parametrize(("case", "send", "status", "tenant", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_are_answered_uniformly_and_recorded_with_their_reason(
    client: falcon.testing.TestClient, store: FakeStore, case: str,
    send: Callable[[falcon.testing.TestClient], falcon.testing.Result], status: int, tenant: str | None,
    reason: str,
) -> None:
    r = send(client)
    assert r.status_code == status
    # One body per status: the caller never learns which check failed.
    assert r.content == {400: b'{"error":"bad request"}', 401: b'{"error":"unauthorized"}',
                         403: b'{"error":"forbidden"}', 404: b'{"error":"not found"}',
                         413: b'{"error":"payload too large"}'}[status]
    [rec] = store.records
    assert (rec.outcome, rec.status_code, rec.tenant, rec.reason) == ("rejected", status, tenant, reason)
    assert rec.body is None


def test_the_url_decides_the_tenant_not_the_payload(client: falcon.testing.TestClient, store: FakeStore) -> None:
    # Correctly signed by Meta (one app secret for every tenant), addressed to acme's URL, naming
    # blue-harbor's number: refused, never delivered to blue-harbor.
    assert wa(client, wa_payload(BLUE_PHONE)).status_code == 403
    assert wa(client, wa_payload(BLUE_PHONE), slug="blue-harbor").status_code == 200
    assert [(r.tenant, r.outcome) for r in store.records] == [("acme", "rejected"), ("blue-harbor", "accepted")]


# -- the WhatsApp handshake ----------------------------------------------------------------------------

def test_handshake_echoes_the_challenge(client: falcon.testing.TestClient, store: FakeStore) -> None:
    r = client.simulate_get("/api/webhooks/wa/t/acme", params={
        "hub.mode": "subscribe", "hub.verify_token": A["verify_token"], "hub.challenge": "1158201444"})
    assert r.status_code == 200
    assert r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    assert (store.last.outcome, store.last.reason) == ("accepted", "handshake")


@pytest.mark.parametrize(
    ("slug", "params", "status"),
    [
        ("acme", {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, 403),
        ("acme", {"hub.mode": "subscribe", "hub.verify_token": SECRETS["blue-harbor"]["verify_token"],
                  "hub.challenge": "1"}, 403),
        ("acme", {"hub.mode": "unsubscribe", "hub.verify_token": A["verify_token"], "hub.challenge": "1"}, 403),
        ("acme", {}, 403),
        ("nobody", {"hub.mode": "subscribe", "hub.verify_token": A["verify_token"], "hub.challenge": "1"}, 404),
    ],
)
def test_handshake_refusals(client: falcon.testing.TestClient, store: FakeStore, slug: str,
                            params: dict[str, str], status: int) -> None:
    r = client.simulate_get(f"/api/webhooks/wa/t/{slug}", params=params)
    assert r.status_code == status
    assert "1" not in r.text
    assert store.last.outcome == "rejected"


# -- storage failures ----------------------------------------------------------------------------------

def test_an_unrecordable_event_gets_503_then_is_stored_once_on_retry(
    client: falcon.testing.TestClient, store: FakeStore
) -> None:
    store.fail = True
    r = hosp(client)
    assert r.status_code == 503
    assert store.records == []
    store.fail = False
    assert hosp(client).status_code == 200  # the provider's retry
    assert [(x.outcome, x.event_id) for x in store.records] == [("accepted", "evt-1")]


def test_a_refusal_stays_a_refusal_when_it_cannot_be_recorded(client: falcon.testing.TestClient,
                                                              store: FakeStore) -> None:
    store.fail = True
    assert hosp(client, secret="wrong-secret").status_code == 401


# -- operators -----------------------------------------------------------------------------------------

def test_healthz(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/healthz").status_code == 200


def test_readyz_needs_a_database(client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/readyz")
    assert r.status_code == 503
    assert r.json["tenants"] == 3 and r.json["database"] == "not configured"


def test_metrics_count_by_provider_tenant_and_outcome(client: falcon.testing.TestClient) -> None:
    hosp(client)
    hosp(client)
    hosp(client, slug="nobody")
    text = client.simulate_get("/metrics").text
    assert 'tenantctl_webhook_requests_total{outcome="accepted",provider="hospitable",tenant="acme"} 1.0' in text
    assert 'tenantctl_webhook_requests_total{outcome="duplicate",provider="hospitable",tenant="acme"} 1.0' in text
    assert ('tenantctl_webhook_requests_total{outcome="rejected",provider="hospitable",tenant="(unknown)"} 1.0'
            in text)
    assert "tenantctl_webhook_latency_seconds_bucket" in text


def test_unknown_provider_path_is_404(client: falcon.testing.TestClient) -> None:
    assert post(client, "/api/webhooks/stripe/t/acme", b"{}").status_code == 404


def test_no_secret_in_answers_or_records(client: falcon.testing.TestClient, store: FakeStore) -> None:
    for case in REFUSALS:
        case[1](client)
    hosp(client)
    wa(client, wa_payload())
    dump = json.dumps([vars(r) for r in store.records], default=str)
    for tenant_secrets in SECRETS.values():
        for value in tenant_secrets.values():
            assert value not in dump
