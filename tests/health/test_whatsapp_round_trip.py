"""`health --active` for WhatsApp, end to end: the CLI sends a template through the sandbox's Cloud API, the
sandbox sends Meta-shaped signed status webhooks to the subscription's callback (mapped to a real `tenantctl
serve`), and the row reports the round trip once the server has recorded them. A server that is down or a
secret that does not match reads degraded with what to do; a tenant without a test recipient reads unknown."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from typing import Any

import httpx
import pytest

from sandbox.meta_webhooks import Delivery, StatusJob, StatusSender, status_payload, target_url
from store import health as store_health
from store.engine import make_engine
from tests.health.conftest import APP_SECRET, Rehearsal, row

pytestmark = pytest.mark.slow

PHONE = "106540352242922"
ADDRESS = f"whatsapp.round_trip[acme/{PHONE}]"


def _route_to_tenant_url(rehearsal: Rehearsal) -> None:
    """The seed's drift points the phone's override at an old vendor; `apply` would fix it."""
    rehearsal.change_world(lambda w: setattr(w.meta.phones[PHONE], "override_callback_uri", None))


def _active(rehearsal: Rehearsal, target: str, *extra: str, secret: str = APP_SECRET) -> dict[str, Any]:
    _, doc = rehearsal.health_json("-t", "acme", "-p", "whatsapp", "--active", *extra,
                                   env={"TENANTCTL_SANDBOX_WEBHOOK_TARGET": target,
                                        "TENANTCTL_META_APP_SECRETS": secret})
    return row(doc, ADDRESS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_status_webhook_is_recorded_and_the_round_trip_reported(rehearsal: Rehearsal, server: str) -> None:
    _route_to_tenant_url(rehearsal)
    r = _active(rehearsal, server)
    assert r["health"] == "healthy", r
    assert "template hello_world to …5678" in r["detail"] and "round trip" in r["detail"]
    assert "sent recorded after" in r["detail"] and "delivered recorded after" in r["detail"]
    [sent] = rehearsal.world().meta.messages.values()
    assert (sent.to, sent.template) == ("4915112345678", "hello_world")
    assert sent.id in r["detail"]
    engine = make_engine(rehearsal.db_url)
    try:
        assert set(store_health.message_statuses(engine, "acme", sent.id)) == {"sent", "delivered"}
    finally:
        engine.dispose()


def test_a_server_that_is_down_reads_degraded_with_what_to_do(rehearsal: Rehearsal) -> None:
    _route_to_tenant_url(rehearsal)
    r = _active(rehearsal, f"http://127.0.0.1:{_free_port()}", "--timeout", "4")
    assert r["health"] == "degraded", r
    assert "no status webhook recorded within 2 s" in r["detail"]
    assert "tenantctl serve" in r["hint"] and "https://" in r["hint"]
    assert r["duration_ms"] < 4000


def test_a_refused_status_webhook_says_why(rehearsal: Rehearsal, server: str) -> None:
    _route_to_tenant_url(rehearsal)
    r = _active(rehearsal, server, "--timeout", "6", secret="not-the-app-secret-000")
    assert r["health"] == "degraded", r
    assert "was refused: bad-signature" in r["detail"]
    assert "TENANTCTL_META_APP_SECRETS" in r["hint"]
    assert "not-the-app-secret-000" not in json.dumps(r)


def test_without_a_test_recipient_the_round_trip_is_not_run(rehearsal: Rehearsal) -> None:
    path = rehearsal.root / "examples" / "acme.yaml"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if "test_recipient" not in line))
    r = _active(rehearsal, "http://127.0.0.1:9")
    assert r["health"] == "unknown" and "whatsapp.test_recipient" in r["hint"]
    assert rehearsal.world().meta.messages == {}


# The sandbox's sender, on its own -----------------------------------------------------------------
JOB = StatusJob("102290129340398", PHONE, "+49 30 0352242", "wamid.X", "4915112345678",
                "https://hooks.example/api/webhooks/wa/t/acme", "utility")


def test_callback_urls_map_to_a_loopback_target_only() -> None:
    assert target_url(JOB.callback_url or "", "http://127.0.0.1:8080") == \
        "http://127.0.0.1:8080/api/webhooks/wa/t/acme"
    assert target_url(JOB.callback_url or "", "http://10.0.0.5:8080") is None
    assert target_url(JOB.callback_url or "", None) is None


def test_the_status_webhooks_are_signed_and_retried_boundedly() -> None:
    got: list[tuple[str, bytes]] = []

    class Capture(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            got.append((request.headers["X-Hub-Signature-256"], request.read()))
            return httpx.Response(500 if len(got) == 1 else 200)

    original = httpx.Client.__init__

    def with_capture(self: httpx.Client, **kw: Any) -> None:
        original(self, **{**kw, "transport": Capture()})

    sender = StatusSender(target=lambda: "http://127.0.0.1:1", secret=lambda: "s3cret", sleep=lambda _s: None)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "__init__", with_capture)
        sender.submit(JOB)
        sender.join()
    assert sender.log == [Delivery("wamid.X", "sent", "delivered", 2), Delivery("wamid.X", "delivered", "delivered", 1)]
    for signature, body in got:
        assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    statuses = [json.loads(b)["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] for _, b in got]
    assert statuses == ["sent", "sent", "delivered"]
    assert status_payload(JOB, "sent", 0)["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == PHONE


def test_a_target_that_never_answers_is_given_up_after_bounded_attempts() -> None:
    sender = StatusSender(target=lambda: f"http://127.0.0.1:{_free_port()}", secret=lambda: "s",
                          sleep=lambda _s: None)
    sender.submit(JOB)
    sender.join()
    assert [(d.status, d.outcome, d.attempts) for d in sender.log] == [("sent", "failed", 4)]


def test_meta_failing_at_the_send_reads_unknown_and_nothing_is_sent(rehearsal: Rehearsal) -> None:
    faults = json.dumps({"rate": 1.0, "kinds": ["500"], "providers": ["meta"]})
    _, doc = rehearsal.health_json("-t", "acme", "-p", "whatsapp", "--active",
                                   env={"TENANTCTL_SANDBOX_FAULTS": faults})
    rows = [r for r in doc["rows"] if r["address"] in (ADDRESS, "whatsapp.health[acme]")]
    assert rows and all(r["health"] == "unknown" for r in rows), doc["rows"]
    assert rehearsal.world().meta.messages == {}


def test_a_test_recipient_with_a_plus_is_refused_naming_the_field(rehearsal: Rehearsal) -> None:
    path = rehearsal.root / "examples" / "acme.yaml"
    path.write_text(path.read_text().replace('test_recipient: "4915112345678"', 'test_recipient: "+4915112345678"'))
    r = rehearsal.run("validate")
    assert r.code == 1
    assert "acme.yaml" in r.all and "test_recipient" in r.all
