"""With the real group-commit store on SQLite: a database that cannot commit gives 503, never a 200 for an
event that was not stored, and the provider's retry stores it exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
from sqlalchemy import select

from store.engine import make_engine
from store.migrate import upgrade
from store.schema import webhook_log
from store.webhook_log import GroupCommitEventStore
from webhook_server.app import create_app
from webhook_server.routing import build_routing

from .conftest import make_settings
from .helpers import SECRETS, FixedClock, app_secrets, dumps, sign_hex, tenants

# A fault drill (the database out of service): run by `make faults` and CI, apart from `make test`.
pytestmark = pytest.mark.fault


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[str, falcon.testing.TestClient]]:
    path = tmp_path / "t.db"
    upgrade(f"sqlite:///{path}")
    engine = make_engine(f"sqlite:///{path}", busy_timeout_ms=50)
    store = GroupCommitEventStore(engine, timeout_s=5, retry_pause_s=0.01)
    app = create_app(build_routing(tenants(), app_secrets()), store, make_settings(), FixedClock())
    yield str(path), falcon.testing.TestClient(app)
    store.close()
    engine.dispose()


def _send(client: falcon.testing.TestClient, event: str) -> int:
    body = dumps({"id": event, "action": "reservation.created"})
    return client.simulate_post("/api/webhooks/hospitable/t/acme", body=body,
                                headers={"Signature": sign_hex(SECRETS["acme"]["hospitable"], body)}).status_code


def _accepted(path: str) -> list[str]:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return [r.event_id for r in conn.execute(
                select(webhook_log.c.event_id).where(webhook_log.c.outcome == "accepted"))]
    finally:
        engine.dispose()


def test_outage_gives_503_and_the_retry_stores_the_event_once(db: tuple[str, falcon.testing.TestClient]) -> None:
    path, client = db
    assert _send(client, "before") == 200
    assert _accepted(path) == ["before"]  # a 200 means committed: visible to another connection

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the database cannot take a write: as good as down
    try:
        assert _send(client, "during") == 503
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert _accepted(path) == ["before"]

    assert _send(client, "during") == 200  # the provider retries
    assert _send(client, "during") == 200  # and perhaps again
    assert sorted(_accepted(path)) == ["before", "during"]


def test_a_whatsapp_message_redelivered_in_another_batch_is_stored_once(
        db: tuple[str, falcon.testing.TestClient]) -> None:
    from .helpers import ACME_PHONE, sign_meta, wa_payload

    _, client = db

    def deliver(*ids: str) -> str:
        body = dumps(wa_payload(ACME_PHONE, *ids))
        r = client.simulate_post("/api/webhooks/wa/t/acme", body=body,
                                 headers={"X-Hub-Signature-256": sign_meta(body)})
        assert r.status_code == 200
        return r.text

    first = deliver("wamid.A")
    again = deliver("wamid.A", "wamid.B")  # Meta's retry batched with a new message: B is new
    replay = deliver("wamid.B")  # B alone: a delivery never seen as such, but nothing in it is new
    assert "duplicate" not in first and "duplicate" not in again and "duplicate" in replay
