"""The WhatsApp round trip's verdicts, against the spec-checked sandbox with a stand-in webhook log: healthy
with the times once a status is recorded; degraded when Meta reports `failed`, when the server refused
the status webhook, or when nothing arrives in time; unknown when the send fails (nothing sent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reconciler.providers.base import StatusEvidence
from reconciler.providers.whatsapp import WhatsAppProvider
from sandbox.meta_webhooks import StatusSender
from sandbox.world import World
from tests.reconciler.providers.helpers import (
    PHONE,
    SLUG,
    make_ctx,
    make_tenant,
    make_world,
    spec_checked_http,
    tenant_data,
)

RECIPIENT = "4915112345678"
ADDRESS = f"whatsapp.round_trip[{SLUG}/{PHONE}]"


class Log:
    """The webhook log as the CLI reads it: statuses appear after `after` reads."""

    def __init__(self, statuses: Sequence[str], *, after: int = 2, refusals: Sequence[str] = ()) -> None:
        self.statuses, self.after, self.refusals, self.reads = statuses, after, tuple(refusals), 0
        self.asked: list[str] = []

    def __call__(self, tenant: str, message_id: str, since: datetime) -> StatusEvidence:
        self.reads += 1
        self.asked.append(message_id)
        seen: Mapping[str, datetime] = ({s: datetime.now(UTC) for s in self.statuses}
                                        if self.reads > self.after else {})
        return StatusEvidence(seen, self.refusals)


def _world() -> World:
    world = make_world()
    world.meta._sender = StatusSender(target=lambda: None)  # no delivery: the stand-in log answers
    return world


def _run(world: World, log: Log | None, wait_s: float = 2.0, **tenant: Any) -> Any:
    data = tenant_data()
    data["whatsapp"] = {**data["whatsapp"], "test_recipient": RECIPIENT, **tenant}
    t = make_tenant(whatsapp=data["whatsapp"])
    provider = WhatsAppProvider(poll_s=0.01)
    [row] = provider.round_trip(t, make_ctx(message_evidence=log, status_wait_s=wait_s), spec_checked_http(world))
    assert row.name == ADDRESS
    return row


def test_a_recorded_status_is_a_healthy_round_trip_with_its_times() -> None:
    world, log = _world(), Log(["sent", "delivered"])
    row = _run(world, log)
    [message] = world.meta.messages.values()
    assert (message.to, message.type, message.template) == (RECIPIENT, "template", "hello_world")
    assert set(log.asked) == {message.id}
    assert row.health.value == "healthy", row.detail
    assert "to …5678" in row.detail and RECIPIENT not in row.detail
    assert "sent recorded after" in row.detail and "delivered recorded after" in row.detail
    assert "round trip" in row.detail


def test_sent_without_delivered_is_healthy_with_a_note() -> None:
    row = _run(_world(), Log(["sent"], after=0), wait_s=0.2)
    assert row.health.value == "healthy" and "not delivered within" in row.detail


def test_a_failed_status_is_degraded() -> None:
    row = _run(_world(), Log(["failed"]))
    assert row.health.value == "degraded" and "Meta reported the message failed" in row.detail


def test_a_refused_status_webhook_is_degraded_with_the_reason() -> None:
    row = _run(_world(), Log([], refusals=["bad-signature"]), wait_s=0.2)
    assert row.health.value == "degraded" and "refused: bad-signature" in row.detail
    assert "TENANTCTL_META_APP_SECRETS" in row.hint


def test_nothing_recorded_in_time_is_degraded_and_bounded() -> None:
    started = datetime.now(UTC)
    row = _run(_world(), Log([]), wait_s=0.3)
    assert row.health.value == "degraded" and "no status webhook recorded within 0.3 s" in row.detail
    assert "tenantctl serve" in row.hint
    assert (datetime.now(UTC) - started).total_seconds() < 2


def test_a_template_the_waba_lacks_fails_the_send_and_nothing_is_sent() -> None:
    world = _world()
    world.meta.templates = {}
    log = Log(["sent"])
    row = _run(world, log)
    assert row.detail.startswith("the send step failed") and row.detail.endswith("nothing was sent")
    assert row.health.value != "healthy"
    assert world.meta.messages == {} and log.reads == 0


def test_without_a_database_the_round_trip_is_not_run() -> None:
    world = _world()
    row = _run(world, None)
    assert row.health.value == "unknown" and "TENANTCTL_DATABASE_URL" in row.hint
    assert world.meta.messages == {}


def test_free_text_outside_a_customer_service_window_is_refused_by_the_sandbox() -> None:
    import httpx

    from sandbox.transport import sandbox_transport
    from tests.reconciler.providers.helpers import META_TOKEN

    world = _world()
    with httpx.Client(transport=sandbox_transport(world), base_url="http://sandbox") as client:
        body = {"messaging_product": "whatsapp", "to": RECIPIENT, "type": "text", "text": {"body": "hi"}}
        resp = client.post(f"/meta/v23.0/{PHONE}/messages", json=body,
                           headers={"Authorization": f"Bearer {META_TOKEN}"})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == 131047
        world.meta.open_windows.append(RECIPIENT)
        resp = client.post(f"/meta/v23.0/{PHONE}/messages", json=body,
                           headers={"Authorization": f"Bearer {META_TOKEN}"})
        assert resp.status_code == 200 and resp.json()["messages"][0]["id"].startswith("wamid.")
