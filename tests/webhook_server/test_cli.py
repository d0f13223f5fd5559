"""`tenantctl db upgrade | current` and `tenantctl webhooks log | stats | prune` on a SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from store.engine import make_engine
from store.webhook_log import DirectEventStore, WebhookRecord
from tenantctl.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("DATABASE_URL", "TENANTCTL_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_db_upgrade_then_current(env: Path) -> None:
    code, out = run("db", "current")
    assert code == 1 and "tenantctl db upgrade" in out
    assert run("db", "upgrade")[0] == 0
    code, out = run("db", "current")
    assert code == 0 and "up to date" in out


def test_webhook_commands_refuse_an_unmigrated_database(env: Path) -> None:
    code, out = run("webhooks", "log")
    assert code == 1 and "no such table" not in out


def test_log_stats_and_prune(env: Path) -> None:
    run("db", "upgrade")
    engine = make_engine(f"sqlite:///{env / 'tenantctl.db'}")
    store = DirectEventStore(engine)
    now = datetime.now(UTC)
    for i, (age, outcome, reason) in enumerate([
        (timedelta(minutes=5), "accepted", None), (timedelta(minutes=4), "rejected", "bad-signature"),
        (timedelta(days=40), "accepted", None),
    ]):
        store.record(WebhookRecord(received_at=now - age, tenant="acme", provider="hospitable", outcome=outcome,
                                   status_code=200 if outcome == "accepted" else 401, reason=reason,
                                   event_id=f"evt-{i}"))
    engine.dispose()

    code, out = run("webhooks", "log", "--rejected")
    assert code == 0 and "bad-signature" in out and "evt-0" not in out
    code, out = run("webhooks", "log", "--since", "1h", "--tenant", "acme")
    assert "evt-0" in out and "evt-2" not in out
    code, out = run("webhooks", "stats", "--format", "json")
    assert code == 0
    assert '"accepted": 1' in out and '"rejected": 1' in out
    code, out = run("webhooks", "prune", "--older-than", "30d")
    assert code == 0 and "deleted 0 " in out  # the old event was never delivered: kept
    code, out = run("webhooks", "prune", "--older-than", "30d", "--include-undelivered")
    assert code == 0 and "deleted 1 " in out
    assert run("webhooks", "prune", "--older-than", "soon")[0] != 0
