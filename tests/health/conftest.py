"""A rehearsal for `tenantctl health`: the examples copied, the sandbox seeded, the CLI run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.world import World
from store import migrate
from store.engine import make_engine
from store.webhook_log import DirectEventStore, WebhookRecord
from tenancy.loader import load_tenants
from tenancy.redact import secret_values
from tests.conftest import DEMO_KEY, EXAMPLES, POLL_TLS, CliResult, RunCli


@dataclass
class Rehearsal:
    root: Path
    world_file: Path
    db_url: str
    secrets: list[str]
    env: dict[str, str]
    run_cli: RunCli
    server_pid: int | None = None  # the gunicorn master of the `server` fixture

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


APP_SECRET = "sim-app-secret-1234567890"
ADMIN = "sim-admin-token-1234567890"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(rehearsal: Rehearsal) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_"))}
    env.update(rehearsal.env)
    env.pop("TENANTCTL_SANDBOX_INPROCESS")
    env.update({"TENANTCTL_TENANTS": str(rehearsal.root / "examples"), "TENANTCTL_META_APP_SECRETS": APP_SECRET,
                "TENANTCTL_ADMIN_TOKEN": ADMIN, "TENANTCTL_WORKERS": "1", "TENANTCTL_THREADS": "2",
                "TENANTCTL_METRICS_STORE_TTL_S": "0"})
    log = (rehearsal.root / "server.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "serve", "--bind", f"127.0.0.1:{port}"],
                            cwd=rehearsal.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    rehearsal.server_pid = proc.pid
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            assert proc.poll() is None, (rehearsal.root / "server.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1, verify=POLL_TLS).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (rehearsal.root / "server.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
