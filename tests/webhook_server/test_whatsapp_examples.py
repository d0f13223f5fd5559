"""Every WhatsApp webhook example of Meta's spec, and the account-level events the spec's schemas describe:
accepted at the right tenant's URL and at the app-level callback, refused at another tenant's URL, stored
once when Meta retries them (on the real SQLite store).

The spec (vendored in specs/) carries examples of the message-level fields only. The account-level
payloads are built from its envelope (``WebhookPayload`` → ``Entry`` → ``Change``) and its objects
(the message template of its ``GET /{WABA-ID}/message_templates`` example, the template status,
phone-number quality and messaging-limit enums); the value keys of each field follow Meta's webhook
reference pages (developers.facebook.com → WhatsApp → Webhooks → Reference), which the spec does not carry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import yaml
from sqlalchemy import select

from store.engine import make_engine
from store.migrate import upgrade
from store.schema import webhook_log
from store.webhook_log import DirectEventStore
from webhook_server.app import create_app
from webhook_server.routing import build_routing

from .conftest import make_settings
from .helpers import (
    ACME_PHONE,
    ACME_WABA,
    BLUE_PHONE,
    BLUE_WABA,
    FakeStore,
    FixedClock,
    app_secrets,
    dumps,
    sign_meta,
    tenants,
)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "meta-whatsapp-business-messaging-api_v23.0.yaml"
TRIGGERED_AT = 1750269342  # Entry.time: Meta's trigger timestamp (Unix seconds)
ACCOUNT_FIELDS = ("message_template_status_update", "account_update", "phone_number_quality_update",
                  "template_category_update")


@cache
def _spec() -> dict[str, Any]:
    # libyaml's loader: the pure-Python one took 4 s of every test process's collection for this 1 MB file
    with SPEC.open("rb") as fh:
        loaded: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    return loaded


def _schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = _spec()["components"]["schemas"][name]
    return found


@cache
def _examples() -> dict[str, dict[str, Any]]:
    content = _spec()["paths"]["/whatsapp/webhooks"]["post"]["requestBody"]["content"]
    found: dict[str, dict[str, Any]] = {}
    for media in content.values():
        for name, example in (media.get("examples") or {}).items():
            found[name] = example["value"]
    return found


def _template() -> dict[str, Any]:
    """The first template of the spec's example answer to GET /{WABA-ID}/message_templates."""
    op = _spec()["paths"]["/{Version}/{WABA-ID}/message_templates"]["get"]
    examples = op["responses"]["200"]["content"]["application/json"]["examples"]
    first: dict[str, Any] = next(iter(examples.values()))["value"]["data"][0]
    return first


def _account_value(field: str) -> dict[str, Any]:
    t = _template()
    statuses = _schema("MessageTemplate")["properties"]["status"]["enum"]
    display = _schema("Metadata")["properties"]["display_phone_number"]["example"]
    tiers = _schema("WhatsAppAccountNumber")["properties"]["messaging_limit_tier"]["enum"]
    template = {"message_template_id": int(t["id"]), "message_template_name": t["name"],
                "message_template_language": t["language"]}
    if field == "message_template_status_update":
        assert "REJECTED" in statuses
        return {"event": "REJECTED", **template, "reason": "INCORRECT_CATEGORY",
                "message_template_category": t["category"]}
    if field == "template_category_update":
        return {**template, "previous_category": t["previous_category"], "new_category": t["category"]}
    if field == "phone_number_quality_update":
        assert "TIER_1K" in tiers and "TIER_250" in tiers
        return {"display_phone_number": display, "event": "DOWNGRADE", "old_limit": "TIER_1K",
                "current_limit": "TIER_250"}
    if field == "account_update":
        return {"phone_number": display, "event": "VERIFIED_ACCOUNT"}
    raise AssertionError(field)


def account_payload(field: str, waba: str = ACME_WABA, at: int = TRIGGERED_AT) -> dict[str, Any]:
    """An account-level event of FIELD from WABA: no metadata, no phone-number ID; entry.id is the WABA."""
    return {"object": "whatsapp_business_account",
            "entry": [{"id": waba, "time": at, "changes": [{"value": _account_value(field), "field": field}]}]}


def _readdress(payload: dict[str, Any], waba: str, phone: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    for entry in out["entry"]:
        entry["id"] = waba
        for change in entry["changes"]:
            metadata = change["value"].get("metadata")
            if metadata is not None:
                metadata["phone_number_id"] = phone
    return out


def payload_for(name: str, waba: str, phone: str) -> dict[str, Any]:
    """Spec example NAME (or account-level FIELD NAME) as sent for the tenant owning WABA and PHONE."""
    if name in ACCOUNT_FIELDS:
        return account_payload(name, waba)
    return _readdress(_examples()[name], waba, phone)


NAMES = sorted(_examples()) + list(ACCOUNT_FIELDS)


def _post(client: falcon.testing.TestClient, path: str, payload: dict[str, Any]) -> falcon.testing.Result:
    body = dumps(payload)
    return client.simulate_post(path, body=body, headers={"X-Hub-Signature-256": sign_meta(body),
                                                          "Content-Type": "application/json"})


def test_the_spec_has_its_examples() -> None:
    assert len(_examples()) >= 16


@pytest.mark.parametrize("field", ACCOUNT_FIELDS)
def test_account_level_payloads_fit_the_spec_envelope_and_name_no_phone_number(field: str) -> None:
    payload = account_payload(field)
    assert set(_schema("WebhookPayload")["required"]) <= set(payload)
    [entry] = payload["entry"]
    assert set(_schema("Entry")["required"]) <= set(entry)
    [change] = entry["changes"]
    assert set(_schema("Change")["required"]) <= set(change)
    assert "metadata" not in change["value"]


@pytest.mark.parametrize("name", NAMES)
def test_accepted_at_its_tenants_url(client: falcon.testing.TestClient, store: FakeStore, name: str) -> None:
    payload = payload_for(name, ACME_WABA, ACME_PHONE)
    r = _post(client, "/api/webhooks/wa/t/acme", payload)
    assert r.status_code == 200
    assert (store.last.outcome, store.last.tenant, store.last.reason) == ("accepted", "acme", None)
    assert store.last.body == dumps(payload).decode()
    assert store.last.event_id and not store.last.event_id.startswith("sha256:")  # keyed, not the body's digest


@pytest.mark.parametrize("name", NAMES)
def test_accepted_at_the_app_callback_and_recorded_for_its_tenant(
        client: falcon.testing.TestClient, store: FakeStore, name: str) -> None:
    payload = payload_for(name, BLUE_WABA, BLUE_PHONE)
    r = _post(client, "/api/webhooks/wa", payload)
    assert r.status_code == 200
    assert r.content == b'{"status":"ok"}'
    [rec] = store.records
    assert (rec.outcome, rec.tenant, rec.status_code, rec.reason) == ("accepted", "blue-harbor", 200, None)
    assert rec.body == dumps(payload).decode()  # the whole batch is blue-harbor's: its original body


@pytest.mark.parametrize("name", NAMES)
def test_refused_at_another_tenants_url(client: falcon.testing.TestClient, store: FakeStore, name: str) -> None:
    # Signed by Meta (one app secret for every tenant), but acme's event posted to blue-harbor's URL.
    r = _post(client, "/api/webhooks/wa/t/blue-harbor", payload_for(name, ACME_WABA, ACME_PHONE))
    assert r.status_code == 403
    assert r.content == b'{"error":"forbidden"}'
    assert (store.last.outcome, store.last.tenant, store.last.reason, store.last.body) == (
        "rejected", "blue-harbor", "cross-tenant:acme", None)


# -- retries on the real store ---------------------------------------------------------------------------

@pytest.fixture
def sqlite_app(tmp_path: Path) -> Iterator[tuple[falcon.testing.TestClient, Callable[[], list[Any]]]]:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    upgrade(url)
    engine = make_engine(url)
    s = make_settings()
    client = falcon.testing.TestClient(
        create_app(build_routing(tenants(), app_secrets()), DirectEventStore(engine), s, FixedClock()))

    def rows() -> list[Any]:
        c = webhook_log.c
        with engine.connect() as conn:
            return list(conn.execute(select(c.tenant, c.outcome, c.event_id).order_by(c.id)))

    yield client, rows
    engine.dispose()


@pytest.mark.parametrize("name", NAMES)
def test_a_retry_is_stored_once_whichever_url_it_arrives_at(
        sqlite_app: tuple[falcon.testing.TestClient, Callable[[], list[Any]]], name: str) -> None:
    client, rows = sqlite_app
    payload = payload_for(name, ACME_WABA, ACME_PHONE)
    first = _post(client, "/api/webhooks/wa", payload)
    again = _post(client, "/api/webhooks/wa", payload)
    at_tenant_url = _post(client, "/api/webhooks/wa/t/acme", payload)
    assert (first.status_code, again.status_code, at_tenant_url.status_code) == (200, 200, 200)
    assert (again.content, at_tenant_url.content) == (b'{"status":"duplicate"}', b'{"status":"duplicate"}')
    assert [(t, o) for t, o, _ in rows()] == [("acme", "accepted"), ("acme", "duplicate"), ("acme", "duplicate")]
