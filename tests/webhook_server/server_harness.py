"""Start the real server (`tenantctl serve` → gunicorn) on a free loopback port with SQLite."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from store.migrate import upgrade
from tenancy.sops import encrypt_text
from tests.conftest import POLL_TLS

from .helpers import ADMIN_TOKEN, APP_SECRET, OLD_APP_SECRET, SECRETS, dumps, sign_hex

ROOT = Path(__file__).resolve().parents[2]
DEMO_KEY = ROOT / "examples" / "demo.agekey"


def hosp(client: httpx.Client, event: str, slug: str = "acme",
         secret: str = SECRETS["acme"]["hospitable"]) -> httpx.Response:
    """Deliver one signed Hospitable event with envelope id EVENT."""
    body = dumps({"id": event, "action": "reservation.created", "data": {}})
    return client.post(f"/api/webhooks/hospitable/t/{slug}", content=body,
                       headers={"Signature": sign_hex(secret, body), "Content-Type": "application/json"})


def accepted_events(server: Server) -> list[str]:
    """The event ids of the accepted rows in the server's SQLite log."""
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        return [r[0] for r in conn.execute(
            "SELECT event_id FROM webhook_log WHERE outcome = 'accepted' AND event_id IS NOT NULL")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_tenant(tenants_dir: Path, data: dict[str, Any]) -> Path:
    text = yaml.safe_dump(data, sort_keys=False)
    path = tenants_dir / f"{data['slug']}.yaml"
    path.write_text(encrypt_text(text, path.name, tenants_dir / ".sops.yaml"), encoding="utf-8")
    return path


def make_tenants_dir(root: Path, tenants: list[dict[str, Any]]) -> Path:
    d = root / "tenants"
    d.mkdir()
    shutil.copy(ROOT / "examples" / ".sops.yaml", d / ".sops.yaml")
    for t in tenants:
        write_tenant(d, t)
    return d


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    state: Path
    tenants: Path
    log: Path
    env: dict[str, str] = field(repr=False)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.logs().count(text) < count:
            assert time.monotonic() < deadline, f"no {text!r} in the server log:\n{self.logs()[-3000:]}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def server_env(state: Path, tenants: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_", "SOPS_"))}
    env.update({
        "SOPS_AGE_KEY_FILE": str(DEMO_KEY),
        "TENANTCTL_STATE_DIR": str(state),
        "TENANTCTL_TENANTS": str(tenants),
        "TENANTCTL_META_APP_SECRETS": f"{APP_SECRET},{OLD_APP_SECRET}",
        "TENANTCTL_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTCTL_WORKERS": "2",
        "TENANTCTL_THREADS": "4",
        "TENANTCTL_GRACEFUL_TIMEOUT": "10",
        # Small, so a refused body still fits the socket buffers: the client finishes sending first.
        "TENANTCTL_MAX_BODY_BYTES": "4096",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


def start_server(root: Path, tenants: Path, *, migrate: bool = True, wait: bool = True,
                 serve_args: tuple[str, ...] = (), env: dict[str, str] | None = None, **extra_env: str) -> Server:
    state = root / "state"
    state.mkdir(exist_ok=True)
    if migrate:
        upgrade(f"sqlite:///{state / 'tenantctl.db'}")
    port = free_port()
    env = server_env(state, tenants, port, **(env or {}), **extra_env)
    log = root / "server.log"
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tenantctl", "serve", "--bind", f"127.0.0.1:{port}", *serve_args],
        cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
    )
    out.close()
    server = Server(proc, f"http://127.0.0.1:{port}", state, tenants, log, env)
    if wait:
        deadline = time.monotonic() + 60  # generous: the machine may be shared and loaded
        while True:
            assert proc.poll() is None, f"server exited {proc.returncode}:\n{server.logs()}"
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1, verify=POLL_TLS).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(5)
                raise AssertionError(f"server not ready within 60 s:\n{server.logs()}")
            time.sleep(0.1)
    return server
