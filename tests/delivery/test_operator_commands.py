"""`tenantctl webhooks replay | prune | log | attempts` against the delivery queue, in process: what an operator
may do while a worker holds events, and what the commands say back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from store.delivery import claim_due
from tenantctl.cli import app

from .harness import accepted, insert


@pytest.fixture
def cli(db: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Engine:
    """The commands run against ``db``."""
    monkeypatch.delenv("TENANTCTL_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
    return db


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _claim(engine: Engine, n: int) -> list[int]:
    """A worker claims ``n`` events: their attempts are under way, their lease runs for another minute."""
    items = claim_due(engine, claim="w1:a", now=datetime.now(UTC), lease=timedelta(minutes=1), limit=n,
                      providers=["hospitable"])
    return sorted(i.id for i in items)


def test_replay_leaves_an_event_whose_attempt_is_in_flight_and_says_so(cli: Engine) -> None:
    """Replaying an event a worker is delivering would start a second POST of the same webhook-id beside the
    first: it is left alone, counted, and the operator told to replay it after its attempt ends."""
    insert(cli, accepted(3))
    busy = _claim(cli, 2)
    code, out = run("webhooks", "replay", "--tenant", "acme")
    assert code == 0
    assert "queued 1 event(s) for delivery again" in out
    assert "2 in flight (a worker's attempt may be under way), not replayed: replay them again after their " \
           "attempt ends" in out
    code, out = run("webhooks", "replay", *map(str, busy))
    assert code == 1  # nothing queued
    assert "queued 0 event(s)" in out and "2 in flight" in out
