"""Content is never a 503: an event id no database can hold as sent (a lone UTF-16 surrogate, a NUL, an
over-long id made of them) is stored under its digest and answered 200, on SQLite and on PostgreSQL, through
the real server; a redelivery is then a duplicate like any other, and an id that merely reads like its escape
is another event."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from store.migrate import upgrade
from tests.conftest import PgSchemas

from .helpers import SECRETS, sign_hex, tenant_dicts
from .server_harness import Server, make_tenants_dir, start_server


def _digest(event_id: str) -> str:
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


# As they arrive on the wire (JSON escapes the sender chose), and as stored.
POISON_IDS = {
    "lone-surrogate": (r"evt-\ud800-x", _digest("evt-\ud800-x")),
    "nul": (r"evt-\u0000-x", _digest("evt-\x00-x")),
    "escape-and-newline": (r"evt-\u001b[2J\nforged", "evt-\x1b[2J\nforged"),  # storable: kept as sent
}


def _post_raw_id(c: httpx.Client, raw_id: str) -> httpx.Response:
    body = ('{"id": "' + raw_id + '", "action": "reservation.created", "data": {}}').encode()
    return c.post("/api/webhooks/hospitable/t/acme", content=body,
                  headers={"Signature": sign_hex(SECRETS["acme"]["hospitable"], body)})


Rows = Callable[[], list[tuple[str, str]]]


def _select(url: str, sql: str, **params: object) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def _rows_after(url: str, after: int) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in _select(url, "SELECT outcome, event_id FROM webhook_log WHERE provider = "
                                                "'hospitable' AND id > :after ORDER BY id", after=after)]


def _last_id(url: str) -> int:
    return int(_select(url, "SELECT COALESCE(MAX(id), 0) FROM webhook_log")[0][0])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def _shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Server, str]]:
    """One server per database for the module: its tests tell their rows apart by the log's id."""
    tmp_path = tmp_path_factory.mktemp(f"poison-{request.param}")
    tenants = make_tenants_dir(tmp_path, tenant_dicts()[:1])
    if request.param == "sqlite":
        s = start_server(tmp_path, tenants)
        url = f"sqlite:///{s.state / 'tenantctl.db'}"
    else:
        schemas: PgSchemas = request.getfixturevalue("pg_schemas")
        url = schemas.new()
        upgrade(url)
        s = start_server(tmp_path, tenants, migrate=False, TENANTCTL_DATABASE_URL=url)
    yield s, url
    s.stop()


@pytest.fixture
def server_and_rows(_shared_server: tuple[Server, str]) -> tuple[Server, Rows]:
    """The shared server, and the log's rows written since this test began, oldest first."""
    server, url = _shared_server
    mark = _last_id(url)
    return server, lambda: _rows_after(url, mark)


@pytest.mark.parametrize("case", sorted(POISON_IDS))
def test_a_poison_event_id_is_recorded_and_answered_200(server_and_rows: tuple[Server, Rows],
                                                                 case: str) -> None:
    server, rows = server_and_rows
    raw, stored = POISON_IDS[case]
    with httpx.Client(base_url=server.url, timeout=20) as c:
        assert _post_raw_id(c, raw).status_code == 200
        redelivered = _post_raw_id(c, raw)
        assert redelivered.status_code == 200 and redelivered.json() == {"status": "duplicate"}
    assert rows() == [("accepted", stored), ("duplicate", stored)]


def test_an_overlong_id_of_surrogates_is_stored_under_its_digest(server_and_rows: tuple[Server, Rows]) -> None:
    server, rows = server_and_rows
    with httpx.Client(base_url=server.url, timeout=20) as c:
        assert _post_raw_id(c, r"\udfff" * 300).status_code == 200
    [(outcome, event_id)] = rows()
    assert outcome == "accepted" and event_id.startswith("sha256:")


# Pairs of distinct events whose IDs an escape or a cut would make one key.
LOOKALIKES = [
    (r"evt-\u0000", r"evt-\\x00"),  # a NUL, and the four characters of its escape
    (r"evt-\udcff", r"evt-\\udcff"),  # a lone surrogate, and its escape
    ("a" * 252 + r"\u0000AB", "a" * 252 + r"\u0000CD"),  # equal up to where an escape would be cut
]


def test_two_events_never_share_a_key_however_alike_their_stored_forms(server_and_rows: tuple[Server, Rows]) -> None:
    server, rows = server_and_rows
    with httpx.Client(base_url=server.url, timeout=20) as c:
        answers = [_post_raw_id(c, raw).json() for pair in LOOKALIKES for raw in pair]
        again = [_post_raw_id(c, raw).json() for raw, _ in LOOKALIKES]
    assert answers == [{"status": "ok"}] * 6  # each an event of its own, delivered
    assert again == [{"status": "duplicate"}] * 3  # and a redelivery is still recognised
    assert [outcome for outcome, _ in rows()] == ["accepted"] * 6 + ["duplicate"] * 3
