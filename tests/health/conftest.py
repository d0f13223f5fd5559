"""A rehearsal for `tenantctl health`: the examples copied, the sandbox seeded, the CLI run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.world import World
from store import migrate
from store.engine import make_engine
from store.webhook_log import DirectEventStore, WebhookRecord
from tenancy.loader import load_tenants
from tenancy.redact import secret_values
from tests.conftest import DEMO_KEY, EXAMPLES, CliResult, RunCli


@dataclass
class Rehearsal:
    root: Path
    world_file: Path
    db_url: str
    secrets: list[str]
    env: dict[str, str]
    run_cli: RunCli

    def world(self) -> World:
        return World.from_json(self.world_file.read_text())

    def change_world(self, change: Callable[[World], None]) -> None:
        world = self.world()
        change(world)
        self.world_file.write_text(world.to_json())

    def run(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        return self.run_cli("--tenants", str(self.root / "examples"), *args, env={**self.env, **(env or {})},
                            cwd=self.root)

    def health_json(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        r = self.run("health", "--sandbox", "--format", "json", *args, env=env)
        assert r.out.startswith("{"), r.all
        return r.code, json.loads(r.out)

    def record(self, tenant: str, provider: str, *, age: timedelta, body: str = "{}") -> None:
        """An accepted webhook in the log, `age` ago (as the webhook server records one)."""
        engine = make_engine(self.db_url)
        try:
            store = DirectEventStore(engine)
            store.record(WebhookRecord(datetime.now(UTC) - age, tenant, provider, "accepted", 200,
                                       event_id=f"evt-{provider}-{age.total_seconds()}", body=body,
                                       body_size=len(body)))
        finally:
            engine.dispose()

    def set_status(self, slug: str, status: str) -> None:
        """Plain fields may be edited by hand (the MAC covers encrypted values only)."""
        path = self.root / "examples" / f"{slug}.yaml"
        text = path.read_text()
        old = next(line for line in text.splitlines() if line.startswith("status:"))
        path.write_text(text.replace(old, f"status: {status}", 1))


def row(doc: dict[str, Any], address: str) -> dict[str, Any]:
    found = [r for r in doc["rows"] if r["address"] == address]
    assert found, f"no row {address}: {[r['address'] for r in doc['rows']]}"
    return found[0]


@pytest.fixture
def rehearsal(tmp_path: Path, cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> Rehearsal:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    for name in list(os.environ):
        if name.startswith("TENANTCTL_") or name in ("DATABASE_URL", "SOPS_AGE_KEY"):
            monkeypatch.delenv(name)
    env: dict[str, str] = {}
    db_url = f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}"
    env.update({
        "SOPS_AGE_KEY_FILE": str(DEMO_KEY),
        "TENANTCTL_STATE_DIR": str(tmp_path / "state"),
        "TENANTCTL_SANDBOX_INPROCESS": str(tmp_path / "world.json"),
        "TENANTCTL_RETRY_BASE_S": "0.01", "TENANTCTL_RETRY_ATTEMPTS": "2",
    })
    loaded = load_tenants([tmp_path / "examples"])
    secrets = sorted({s.get_secret_value() for lt in loaded.tenants for s in secret_values(lt.tenant)})
    r = Rehearsal(tmp_path, tmp_path / "world.json", db_url, secrets, env, cli)
    seeded = r.run("sandbox", "seed", "--clean", "--out", str(r.world_file))
    assert seeded.code == 0, seeded.all
    (tmp_path / "state").mkdir(exist_ok=True)
    migrate.upgrade(db_url)
    return r
