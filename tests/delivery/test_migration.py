"""Migration 0007 queues the accepted events already in the log, and only those; it can be undone."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from store.engine import make_engine
from store.migrate import alembic_config, upgrade

from ..conftest import PgSchemas


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_accepted_rows_from_before_are_queued(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'tenantctl.db'}"
    else:
        schemas: PgSchemas = request.getfixturevalue("pg_schemas")
        url = schemas.new()
    upgrade(url, "0002")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for outcome, event in (("accepted", "e1"), ("duplicate", "e1"), ("rejected", None)):
                conn.execute(text(
                    "INSERT INTO webhook_log (received_at, tenant, provider, outcome, status_code, event_id, "
                    "body_size) VALUES (:at, 'acme', 'hospitable', :outcome, 200, :event, 0)"),
                    {"at": "2026-11-30 10:00:00", "outcome": outcome, "event": event})
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT outcome, delivery_state, attempts, next_attempt_at IS NOT NULL FROM webhook_log ORDER BY id"
            )).all()
        assert [tuple(r) for r in rows] == [("accepted", "pending", 0, True), ("duplicate", None, 0, False),
                                            ("rejected", None, 0, False)]
        with engine.connect() as conn:
            command.downgrade(alembic_config(conn), "0002")
            conn.commit()
        with engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM webhook_log")).keys()
        assert "delivery_state" not in columns
    finally:
        engine.dispose()
