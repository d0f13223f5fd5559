"""Findings of the attack test, each through the Falcon app on the real group-commit store (SQLite):
oversized declarations recorded without harming readiness, handshakes that are no events, bounded
replays, payloads in an unexpected shape, non-UTF-8 bodies, event IDs exactly as sent."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, select

from store.engine import make_engine
from store.errors import DatabaseUnavailable
from store.health import inbound_evidence
from store.migrate import upgrade
from store.schema import webhook_log
from store.webhook_log import GroupCommitEventStore, WebhookRecord, last_verified_event
from tests.conftest import PgSchemas, RunCli
from webhook_server.app import create_app
from webhook_server.routing import build_routing
from webhook_server.storage import EngineLogReader

from .conftest import make_settings
from .helpers import (
    ACME_PHONE,
    ADMIN_TOKEN,
    SECRETS,
    FixedClock,
    app_secrets,
    dumps,
    sign_hex,
    sign_meta,
    tenants,
    wa_payload,
)

SAMPLE = 5
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@dataclass
class Server:
    engine: Engine
    store: GroupCommitEventStore
    client: falcon.testing.TestClient

    def rows(self) -> list[Any]:
        c = webhook_log.c
        with self.engine.connect() as conn:
            return list(conn.execute(select(c.tenant, c.outcome, c.status_code, c.reason, c.event_id, c.body_size,
                                            c.body, c.delivery_state, c.repeats).order_by(c.id)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 't.db'}"
    else:
        schemas: PgSchemas = request.getfixturevalue("pg_schemas")
        url = schemas.new()
    upgrade(url)
    engine = make_engine(url)
    store = GroupCommitEventStore(engine, timeout_s=5, retry_pause_s=0.01, refusal_sample=SAMPLE)
    settings = make_settings(meta_verify_token=SecretStr("platform-verify-token-1234"))
    app = create_app(build_routing(tenants(), app_secrets()), store, settings, FixedClock(NOW),
                     reader=EngineLogReader(engine))
    yield Server(engine, store, falcon.testing.TestClient(app))
    store.close()
    engine.dispose()


def hosp(client: falcon.testing.TestClient, body: bytes) -> falcon.testing.Result:
    return client.simulate_post("/api/webhooks/hospitable/t/acme", body=body,
                                headers={"Signature": sign_hex(SECRETS["acme"]["hospitable"], body)})


def wa(client: falcon.testing.TestClient, body: bytes, path: str = "/api/webhooks/wa/t/acme") -> Any:
    return client.simulate_post(path, body=body, headers={"X-Hub-Signature-256": sign_meta(body)})


# -- T2#2 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("declared", ["99999999999999999999", "3000000000"])
def test_an_absurd_content_length_is_recorded_as_a_413_and_the_server_stays_ready(server: Server,
                                                                                  declared: str) -> None:
    r = server.client.simulate_post("/api/webhooks/wa", body=b"{}", headers={"Content-Length": declared})
    assert r.status_code == 413
    assert [(o, st, reason, size) for _, o, st, reason, _, size, *_ in server.rows()] == [
        ("rejected", 413, "body-too-large", 2**31 - 1)]
    ready = server.client.simulate_get("/readyz")
    assert ready.json["database"] == "ok", ready.json


# -- T2#4 ---------------------------------------------------------------------------------------------
def test_handshakes_are_recorded_but_never_queued_nor_counted_as_events(server: Server) -> None:
    for path, token in (("/api/webhooks/wa/t/acme", SECRETS["acme"]["verify_token"]),
                        ("/api/webhooks/wa", "platform-verify-token-1234")):
        r = server.client.simulate_get(path, params={"hub.mode": "subscribe", "hub.verify_token": token,
                                                     "hub.challenge": "1158201444"})
        assert r.status_code == 200 and r.text == "1158201444"
    rows = server.rows()
    assert [(t, o, reason, state) for t, o, _, reason, _, _, _, state, _ in rows] == [
        ("acme", "accepted", "handshake", None), (None, "accepted", "handshake", None)]
    assert last_verified_event(server.engine, "acme", "whatsapp") is None
    assert inbound_evidence(server.engine, now=NOW, window=timedelta(hours=24)) == {}
    # A POSTed event is still evidence, and queued.
    assert wa(server.client, dumps(wa_payload())).status_code == 200
    assert last_verified_event(server.engine, "acme", "whatsapp") is not None
    assert server.rows()[-1].delivery_state == "pending"


# -- T2#5 ---------------------------------------------------------------------------------------------
def test_a_replay_flood_keeps_the_table_bounded_and_every_replay_is_answered_duplicate(server: Server) -> None:
    body = dumps({"id": "evt-replayed", "action": "reservation.created"})
    answers = [hosp(server.client, body).content for _ in range(300)]
    assert answers[0] == b'{"status":"ok"}'
    assert set(answers[1:]) == {b'{"status":"duplicate"}'}
    server.store.close()  # writes the folded rows
    rows = server.rows()
    duplicates = [r for r in rows if r.outcome == "duplicate"]
    assert sum(1 + r.repeats for r in duplicates) == 299  # every replay is counted
    assert len(duplicates) <= 1 + SAMPLE + 1  # the first, the sample, one folded row
    assert [r.event_id for r in rows if r.outcome == "accepted"] == ["evt-replayed"]


# -- T2#6 ---------------------------------------------------------------------------------------------
def _odd_shapes() -> list[dict[str, Any]]:
    good = wa_payload()
    value = good["entry"][0]["changes"][0]["value"]
    changes_dict = {**good, "entry": [{**good["entry"][0], "changes": good["entry"][0]["changes"][0]}]}
    metadata_list = json.loads(json.dumps(good))
    metadata_list["entry"][0]["changes"][0]["value"]["metadata"] = [value["metadata"]]
    phone_float = json.loads(json.dumps(good))
    phone_float["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = float(ACME_PHONE)
    return [changes_dict, metadata_list, phone_float]


@pytest.mark.parametrize("payload", _odd_shapes(), ids=["changes-a-dict", "metadata-a-list", "phone-a-float"])
def test_a_payload_whose_routing_keys_are_not_in_the_documented_shape_is_refused(server: Server,
                                                                                payload: dict[str, Any]) -> None:
    r = wa(server.client, dumps(payload))
    assert r.status_code == 400
    r = wa(server.client, dumps(payload), "/api/webhooks/wa")
    assert r.status_code == 200  # Meta's batch is answered, but nothing is stored for any tenant
    assert [(t, o, st, reason, body) for t, o, st, reason, _, _, body, _, _ in server.rows()] == [
        ("acme", "rejected", 400, "unexpected-shape", None),
        (None, "rejected", 200, "unroutable:unexpected-shape", None)]


# -- T2#8 ---------------------------------------------------------------------------------------------
def test_a_body_that_is_not_utf8_is_refused_so_what_is_delivered_is_what_was_received(server: Server) -> None:
    body = '{"id":"evt-utf16","action":"reservation.created"}'.encode("utf-16")
    r = hosp(server.client, body)
    assert r.status_code == 400
    assert [(o, reason, body) for _, o, _, reason, _, _, body, _, _ in server.rows()] == [
        ("rejected", "body-not-utf8", None)]


# -- T2#14 --------------------------------------------------------------------------------------------
def test_an_event_id_is_used_exactly_as_sent(server: Server) -> None:
    assert hosp(server.client, dumps({"id": "evt-2", "action": "a"})).content == b'{"status":"ok"}'
    assert hosp(server.client, dumps({"id": " evt-2 ", "action": "a"})).content == b'{"status":"ok"}'
    assert [r.event_id for r in server.rows() if r.outcome == "accepted"] == ["evt-2", " evt-2 "]


# -- T2#15 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("forwarded", ["<script>", "evil.example", "1.2.3.4.5"])
def test_a_forwarded_client_that_is_no_ip_address_is_ignored(server: Server, forwarded: str) -> None:
    body = dumps({"id": "evt-fwd", "action": "a"})
    r = server.client.simulate_post("/api/webhooks/hospitable/t/acme", body=body, headers={
        "Signature": sign_hex(SECRETS["acme"]["hospitable"], body), "X-Forwarded-For": forwarded})
    assert r.status_code == 200
    c = webhook_log.c
    with server.engine.connect() as conn:
        headers = conn.execute(select(c.headers)).scalar_one()
    assert headers["client"] == headers["peer"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == forwarded  # kept as sent, as a header, not as the address


def test_a_forwarded_client_that_is_an_ip_address_is_kept(server: Server) -> None:
    body = dumps({"id": "evt-fwd", "action": "a"})
    server.client.simulate_post("/api/webhooks/hospitable/t/acme", body=body, headers={
        "Signature": sign_hex(SECRETS["acme"]["hospitable"], body), "X-Forwarded-For": "2001:db8::1"})
    with server.engine.connect() as conn:
        assert conn.execute(select(webhook_log.c.headers)).scalar_one()["client"] == "2001:db8::1"


# -- T2#13 --------------------------------------------------------------------------------------------
def test_the_log_page_shows_control_and_bidi_characters_of_event_ids_escaped(server: Server) -> None:
    for eid in ("evt\x1b[31m", "evt\r\nforged", "evt\u202egnp.exe", "evt\u200e\u200f\u061c"):
        assert hosp(server.client, dumps({"id": eid, "action": "a"})).status_code == 200
    page = server.client.simulate_get("/admin/logs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
    for shown in ("evt\\x1b[31m", "evt\\r\\nforged", "evt\\u202egnp.exe", "evt\\u200e\\u200f\\u061c"):
        assert shown in page
    assert not any(ch in page for ch in "\x1b\u202e\u200e\u200f\u061c")


# -- T2#10 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "message"), [
    ({"cursor": "99999999999999999999999"}, "cursor:"),
    ({"since": "0001-01-01T00:00:00+23:59"}, "since: out of range"),
    # A NUL, which PostgreSQL refuses in text, once answered 503 "database unreachable": the caller's mistake.
    ({"tenant": "\x00"}, "tenant: a tenant"),
    ({"provider": "\x00"}, "provider: one of"),
    ({"reason": "bad-\x00"}, "reason: the start"),
    ({"provider": "HOSPITABLE"}, "provider: one of hospitable, whatsapp, beds24, nuki"),  # not silently empty
    ({"since": "2027-01-01", "until": "2026-01-01"}, "until: must be after since"),
    ({"stat": "dead"}, "unknown parameter 'stat'"),  # a misspelt filter is not the unfiltered log
])
def test_admin_log_parameters_out_of_range_are_a_400_naming_the_parameter(server: Server, params: dict[str, str],
                                                                         message: str) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    page = server.client.simulate_get("/admin/logs", params=params, headers=auth)
    assert page.status_code == 400 and message in html.unescape(page.text)
    if "reason" not in params:  # a filter of the page only
        api = server.client.simulate_get("/admin/webhook-logs", params=params, headers=auth)
        assert api.status_code == 400 and message.split(":", maxsplit=1)[0] in api.json["description"]


def test_a_tenant_page_for_what_is_no_slug_is_not_found(server: Server) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for slug in ("%00", "ACME", "a%20b"):
        assert server.client.simulate_get(f"/admin/tenants/{slug}", headers=auth).status_code == 404


# -- T2#17 --------------------------------------------------------------------------------------------
def test_every_answer_says_nosniff_the_handshake_echo_included(server: Server) -> None:
    echo = server.client.simulate_get("/api/webhooks/wa/t/acme", params={
        "hub.mode": "subscribe", "hub.verify_token": SECRETS["acme"]["verify_token"],
        "hub.challenge": "<html><script>alert(1)</script>"})
    assert echo.status_code == 200 and echo.headers["content-type"].startswith("text/plain")
    for r in (echo, server.client.simulate_get("/healthz"), server.client.simulate_get("/nowhere"),
              server.client.simulate_post("/api/webhooks/hospitable/t/acme", body=b"{}")):
        assert r.headers["x-content-type-options"] == "nosniff"


# -- T2#9 ---------------------------------------------------------------------------------------------
def test_failed_admin_logins_are_limited_per_client_address(server: Server) -> None:
    def login(token: str, client: str = "203.0.113.7") -> falcon.testing.Result:
        return server.client.simulate_post("/admin/login", body=f"token={token}", headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-For": client})

    assert [login(f"guess-{i}").status_code for i in range(10)] == [401] * 10
    refused = login(ADMIN_TOKEN)  # even the right token: the address is blocked for the window
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Too many failed logins" in refused.text
    assert login(ADMIN_TOKEN, client="198.51.100.2").status_code == 303  # another address is not affected


def test_an_admin_token_shorter_than_16_characters_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="TENANTCTL_ADMIN_TOKEN must be at least 16 characters") as e:
        make_settings(admin_token=SecretStr("short-secret"))
    assert "short-secret" not in str(e.value)


def test_the_cli_refuses_a_short_admin_token_without_showing_it(cli: RunCli) -> None:
    out = cli("webhooks", "stats", env={"TENANTCTL_ADMIN_TOKEN": "short-secret"})
    assert out.code == 1 and "TENANTCTL_ADMIN_TOKEN (set in the environment) must be at least 16 characters" in out.err
    assert "short-secret" not in out.all


def test_a_record_refused_for_its_content_fails_alone_and_leaves_the_database_ready(server: Server) -> None:
    bad = WebhookRecord(NOW, "acme", "hospitable", "rejected", 2**70, reason="no-such-status")
    with pytest.raises(DatabaseUnavailable):
        server.store.record(bad)  # no INTEGER column holds it: this record's own fault
    assert server.store.problem() is None
    assert server.client.simulate_get("/readyz").json["database"] == "ok"
