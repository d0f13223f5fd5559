"""The app-level WhatsApp callback (`/api/webhooks/wa`) and the WABA check at a tenant's own URL.

Meta sends the account-level fields (templates, quality, account) only to the app's callback; a batch
there may name several tenants. It is split, one record per tenant holding only that tenant's changes;
a change nobody owns is recorded as unroutable and answered 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from store.engine import make_engine
from store.errors import DatabaseUnavailable
from store.migrate import upgrade
from store.schema import webhook_event_keys, webhook_log
from store.webhook_log import EventStore, GroupCommitEventStore, RecordResult, WebhookRecord
from webhook_server.app import create_app
from webhook_server.events import event_id, item_keys, whatsapp_changes
from webhook_server.routing import build_routing

from ..conftest import PgSchemas
from .conftest import make_settings
from .helpers import (
    ACME_PHONE,
    ACME_WABA,
    BLUE_PHONE,
    BLUE_WABA,
    OLD_APP_SECRET,
    FakeStore,
    FixedClock,
    app_secrets,
    dumps,
    sign_meta,
    tenants,
    wa_payload,
)
from .test_whatsapp_examples import TRIGGERED_AT, account_payload

UNKNOWN_WABA = "555000111222333"
PLATFORM_TOKEN = "platform-verify-token-9c41e7"


def post(client: falcon.testing.TestClient, payload: dict[str, Any], path: str = "/api/webhooks/wa",
         secret: str | None = None) -> falcon.testing.Result:
    body = dumps(payload)
    sig = sign_meta(body) if secret is None else sign_meta(body, secret)
    return client.simulate_post(path, body=body, headers={"X-Hub-Signature-256": sig})


def batch(*payloads: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [e for p in payloads for e in p["entry"]]}


@pytest.fixture
def app_client(store: FakeStore) -> falcon.testing.TestClient:
    s = make_settings(meta_verify_token=SecretStr(PLATFORM_TOKEN))
    return falcon.testing.TestClient(create_app(build_routing(tenants(), s.meta_app_secrets), store, s,
                                                FixedClock()))


# -- routing at the app callback ---------------------------------------------------------------------------

def test_a_batch_naming_two_tenants_is_split_one_record_each_with_only_its_own_changes(
        app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    acme = account_payload("message_template_status_update", ACME_WABA)
    blue = account_payload("phone_number_quality_update", BLUE_WABA)
    blue_msg = wa_payload(BLUE_PHONE, "wamid.BLUE1")
    r = post(app_client, batch(acme, blue, blue_msg))
    assert (r.status_code, r.content) == (200, b'{"status":"ok"}')
    assert [(rec.tenant, rec.outcome) for rec in store.records] == [("acme", "accepted"),
                                                                    ("blue-harbor", "accepted")]
    by_tenant = {rec.tenant: json.loads(rec.body or "") for rec in store.records}
    assert by_tenant["acme"] == batch(acme)
    assert by_tenant["blue-harbor"] == batch(blue, blue_msg)
    # Each part keeps its own keys: the retry of one tenant's part never hides the other's.
    assert store.records[0].item_keys == item_keys("whatsapp", acme)
    assert "msg:wamid.BLUE1" in store.records[1].item_keys


def test_an_unknown_waba_is_recorded_as_unroutable_and_answered_200(
        app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    payload = account_payload("account_update", UNKNOWN_WABA)
    r = post(app_client, payload)
    assert (r.status_code, r.content) == (200, b'{"status":"ok"}')
    [rec] = store.records
    assert (rec.tenant, rec.outcome, rec.status_code, rec.reason, rec.body) == (
        None, "rejected", 200, f"unroutable:unknown-waba:{UNKNOWN_WABA}", None)
    assert rec.event_id == event_id("whatsapp", payload, b"")


def test_the_known_part_of_a_batch_is_kept_and_the_unknown_part_recorded(
        app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    acme = account_payload("template_category_update", ACME_WABA)
    r = post(app_client, batch(acme, account_payload("account_update", UNKNOWN_WABA),
                               wa_payload("999999999999", "wamid.NOBODY")))
    assert r.status_code == 200
    assert [(rec.tenant, rec.outcome, rec.reason) for rec in store.records] == [
        ("acme", "accepted", None),
        (None, "rejected", f"unroutable:unknown-waba:{UNKNOWN_WABA} +1")]
    assert json.loads(store.records[0].body or "") == batch(acme)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (wa_payload("999999999999"), "unroutable:unknown-phone-number-id:999999999999"),
        # acme's number inside blue-harbor's WABA: neither tenant can take it.
        ({"entry": [{**wa_payload(ACME_PHONE)["entry"][0], "id": BLUE_WABA}]},
         f"unroutable:waba-mismatch:{BLUE_WABA}"),
        ({"entry": [{"changes": [{"field": "account_update", "value": {"event": "X"}}]}]},
         "unroutable:missing-routing-key"),
        ({"entry": [{"id": "<script>", "changes": [{"field": "account_update", "value": {}}]}]},
         "unroutable:unknown-waba:(invalid)"),
        ({"object": "whatsapp_business_account", "entry": []}, "unroutable:missing-routing-key"),
    ],
    ids=["unknown number", "number outside its WABA", "no WABA", "not an ID", "no change"],
)
def test_what_no_tenant_owns_is_unroutable(app_client: falcon.testing.TestClient, store: FakeStore,
                                           payload: dict[str, Any], reason: str) -> None:
    assert post(app_client, payload).status_code == 200
    [rec] = store.records
    assert (rec.tenant, rec.outcome, rec.status_code, rec.reason) == (None, "rejected", 200, reason)


def test_a_waba_two_tenants_name_gives_each_its_account_events(store: FakeStore) -> None:
    ts = tenants()
    shared = ts[2].model_copy(update={"whatsapp": ts[2].whatsapp.model_copy(  # type: ignore[union-attr]
        update={"business_account_id": ACME_WABA})})
    s = make_settings()
    client = falcon.testing.TestClient(create_app(build_routing([*ts[:2], shared], s.meta_app_secrets), store,
                                                  s, FixedClock()))
    assert post(client, account_payload("message_template_status_update", ACME_WABA)).status_code == 200
    assert sorted(rec.tenant or "" for rec in store.records) == ["acme", "casa-sol"]


@pytest.mark.parametrize(
    ("signature", "reason"),
    [(None, "missing-signature"), ("sha256=" + "0" * 64, "bad-signature")],
)
def test_an_unverified_post_at_the_app_callback_is_refused_401(
        app_client: falcon.testing.TestClient, store: FakeStore, signature: str | None, reason: str) -> None:
    headers = {"X-Hub-Signature-256": signature} if signature else {}
    r = app_client.simulate_post("/api/webhooks/wa", body=dumps(account_payload("account_update")),
                                 headers=headers)
    assert (r.status_code, r.content) == (401, b'{"error":"unauthorized"}')
    assert (store.last.tenant, store.last.outcome, store.last.reason) == (None, "rejected", reason)


def test_the_previous_app_secret_still_verifies_during_a_rotation(
        app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    assert post(app_client, account_payload("account_update"), secret=OLD_APP_SECRET).status_code == 200
    assert store.last.tenant == "acme"


def test_a_body_over_the_limit_is_refused_413(app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    r = app_client.simulate_post("/api/webhooks/wa", body=b"{" + b" " * 5000 + b"}")
    assert r.status_code == 413
    assert (store.last.tenant, store.last.reason) == (None, "body-too-large")


# -- the handshake ------------------------------------------------------------------------------------------

def test_the_app_handshake_echoes_the_challenge_for_the_platform_token(
        app_client: falcon.testing.TestClient, store: FakeStore) -> None:
    r = app_client.simulate_get("/api/webhooks/wa", params={
        "hub.mode": "subscribe", "hub.verify_token": PLATFORM_TOKEN, "hub.challenge": "1158201444"})
    assert (r.status_code, r.text) == (200, "1158201444")
    assert (store.last.tenant, store.last.outcome, store.last.reason) == (None, "accepted", "handshake")


@pytest.mark.parametrize(
    ("token", "reason"),
    [("wrong", "handshake-bad-token"), ("acme-verify-token-cc33", "handshake-bad-token"),  # a tenant's token
     (None, "handshake-missing-token")],
)
def test_the_app_handshake_refuses_any_other_token(app_client: falcon.testing.TestClient, store: FakeStore,
                                                    token: str | None, reason: str) -> None:
    params = {"hub.mode": "subscribe", "hub.challenge": "1"} | ({"hub.verify_token": token} if token else {})
    r = app_client.simulate_get("/api/webhooks/wa", params=params)
    assert (r.status_code, r.content) == (403, b'{"error":"forbidden"}')
    assert (store.last.outcome, store.last.reason) == ("rejected", reason)


def test_without_a_platform_token_the_app_handshake_is_refused(
        client: falcon.testing.TestClient, store: FakeStore) -> None:
    r = client.simulate_get("/api/webhooks/wa", params={"hub.mode": "subscribe", "hub.verify_token": "",
                                                        "hub.challenge": "1"})
    assert r.status_code == 403
    assert store.last.reason == "no-secret-configured"


# -- the WABA check at a tenant's own URL ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("slug", "payload", "reason"),
    [
        ("acme", account_payload("account_update", BLUE_WABA), "cross-tenant:blue-harbor"),
        ("acme", account_payload("account_update", UNKNOWN_WABA), "cross-tenant:unknown-waba"),
        # casa-sol names no WABA yet: no account-level event can be its own.
        ("casa-sol", account_payload("account_update", UNKNOWN_WABA), "cross-tenant:unknown-waba"),
        # acme's number, but from blue-harbor's WABA: a message is checked against both.
        ("acme", {"entry": [{**wa_payload(ACME_PHONE)["entry"][0], "id": BLUE_WABA}]}, "cross-tenant:blue-harbor"),
        ("acme", {"entry": [{"changes": wa_payload(ACME_PHONE)["entry"][0]["changes"]}]}, "missing-routing-key"),
        ("acme", batch(account_payload("account_update", ACME_WABA), account_payload("account_update", BLUE_WABA)),
         "cross-tenant:blue-harbor"),
    ],
    ids=["another tenant's WABA", "unknown WABA", "tenant without WABA", "message from another WABA",
         "message without entry id", "one foreign change among ours"],
)
def test_at_a_tenant_url_the_waba_must_be_the_tenants(client: falcon.testing.TestClient, store: FakeStore,
                                                      slug: str, payload: dict[str, Any], reason: str) -> None:
    r = post(client, payload, f"/api/webhooks/wa/t/{slug}")
    assert (r.status_code, r.content) == (403, b'{"error":"forbidden"}')
    assert (store.last.tenant, store.last.outcome, store.last.reason) == (slug, "rejected", reason)


# -- item keys of account-level events -------------------------------------------------------------------------

def test_an_account_level_event_keeps_its_key_across_retries_and_batching() -> None:
    one = account_payload("phone_number_quality_update")
    rebatched = batch(account_payload("account_update"), one)
    [key] = item_keys("whatsapp", one)
    assert key.startswith(f"chg:phone_number_quality_update:{ACME_WABA}:DOWNGRADE:{TRIGGERED_AT}:")
    assert key in item_keys("whatsapp", rebatched)
    assert item_keys("whatsapp", json.loads(dumps(one))) == (key,)  # the same JSON, re-serialised


def test_the_same_event_happening_again_later_gets_a_new_key() -> None:
    first = item_keys("whatsapp", account_payload("phone_number_quality_update", at=TRIGGERED_AT))
    later = item_keys("whatsapp", account_payload("phone_number_quality_update", at=TRIGGERED_AT + 86400))
    assert first != later


def test_outside_text_in_a_key_is_replaced() -> None:
    payload = {"entry": [{"id": "1\n2", "time": "x y", "changes": [
        {"field": "\x1b[31mred", "value": {"event": "<b>"}}]}]}
    [key] = item_keys("whatsapp", payload)
    assert key.startswith("chg:?:?:?:?:")


def test_changes_name_their_waba_and_phone_number() -> None:
    payload = batch(account_payload("account_update", ACME_WABA), wa_payload(BLUE_PHONE))
    assert [(c.account, c.phone) for c in whatsapp_changes(payload)] == [(ACME_WABA, None), (BLUE_WABA, BLUE_PHONE)]


# -- a partial failure, on the real store of both backends ----------------------------------------------------

@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'log.db'}"
        upgrade(url)
    else:
        schemas: PgSchemas = request.getfixturevalue("pg_schemas")
        url = schemas.new()
        upgrade(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


class FailingOnce:
    """The real store, made to fail the first record of one tenant (a lost connection mid-batch)."""

    def __init__(self, inner: EventStore, tenant: str) -> None:
        self.inner, self.tenant, self.failed = inner, tenant, False

    def record(self, rec: WebhookRecord) -> RecordResult:
        if rec.tenant == self.tenant and not self.failed:
            self.failed = True
            raise DatabaseUnavailable("could not record the webhook: OperationalError: connection lost")
        return self.inner.record(rec)

    def close(self) -> None:
        self.inner.close()


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    c = webhook_log.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(c.tenant, c.outcome, c.status_code).order_by(c.id))]


def test_a_batch_retried_after_a_partial_failure_stores_each_part_once(engine: Engine) -> None:
    with GroupCommitEventStore(engine, timeout_s=5) as real:
        store = FailingOnce(real, "blue-harbor")
        s = make_settings()
        client = falcon.testing.TestClient(create_app(build_routing(tenants(), app_secrets()), store, s,
                                                      FixedClock()))
        payload = batch(*(account_payload(f, ACME_WABA) for f in ("message_template_status_update",
                                                                  "template_category_update")),
                        *(account_payload(f, BLUE_WABA) for f in ("account_update", "phone_number_quality_update")),
                        account_payload("account_update", UNKNOWN_WABA))
        first = post(client, payload)
        assert first.status_code == 503  # blue-harbor's part was not stored: Meta must retry
        second = post(client, payload)
        third = post(client, payload)
    assert second.status_code == 200 and second.content == b'{"status":"ok"}'
    assert third.content == b'{"status":"duplicate"}'
    rows = _rows(engine)
    accepted = [t for t, o, _ in rows if o == "accepted"]
    assert sorted(accepted) == ["acme", "blue-harbor"]  # each tenant's part exactly once
    assert [t for t, o, _ in rows if o == "duplicate"] == ["acme", "acme", "blue-harbor"]
    assert [(t, st) for t, o, st in rows if o == "rejected"] == [(None, 200)] * 3  # unroutable, every time
    with engine.connect() as conn:
        keys = {(r.tenant, r.item_key.split(":")[1]) for r in conn.execute(select(webhook_event_keys))}
    assert keys == {("acme", "message_template_status_update"), ("acme", "template_category_update"),
                    ("blue-harbor", "account_update"), ("blue-harbor", "phone_number_quality_update")}
