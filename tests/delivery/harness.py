"""Real processes for the delivery tests: the sandbox (fake platform), `tenantctl deliver`, the database."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from store.engine import begin_write
from store.webhook_log import WebhookRecord, write_batch
from tests.conftest import POLL_TLS

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"delivery-test-secret-0123456789ab").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"delivery-old-secret-0123456789abc").decode()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTCTL_", "PROMETHEUS_", "SOPS_"))}
    env.update({"PYTHONUNBUFFERED": "1", "TENANTCTL_DELIVERY_SECRETS": SECRET})
    env.update(extra)
    return env


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process group (the sandbox's gunicorn is a child) and wait for the process."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left
        return int(self.proc.returncode)


def spawn(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> Proc:
    out = log.open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", *args], cwd=cwd, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    return Proc(proc, log)


@dataclass
class Platform:
    """The fake platform: alone (`tenantctl sandbox platform`, aiohttp) or in the sandbox (`sandbox serve`)."""

    proc: Proc
    url: str
    token: str  # the run's admin token (the command writes it): the /_platform/* admin needs it

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def received(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_platform/received", headers=self.auth, timeout=5, verify=POLL_TLS).json())

    def delivered_ids(self) -> set[str]:
        return {r["webhook_id"] for r in self.received() if r["status"] < 300}

    def mode(self, **mode: Any) -> None:
        r = httpx.put(f"{self.url}/_platform/mode", json=mode, headers=self.auth, timeout=5)
        assert r.status_code == 200, r.text

    def body(self, webhook_id: str) -> bytes:
        return httpx.get(f"{self.url}/_platform/body/{webhook_id}", headers=self.auth, timeout=5,
                         verify=POLL_TLS).content

    def destination(self, provider: str) -> str:
        return f"{self.url}/platform/{provider}"


def start_platform(root: Path, secrets: str = SECRET, *, in_sandbox: bool = False) -> Platform:
    port = free_port()
    state = root / "sandbox-state"
    command = ["sandbox", "serve", "--worker-class", "gevent"] if in_sandbox else ["sandbox", "platform"]
    proc = spawn([*command, "--port", str(port)], root / "sandbox.log",
                 base_env(TENANTCTL_DELIVERY_SECRETS=secrets, TENANTCTL_STATE_DIR=str(state)), root)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _up(f"{url}/_sandbox/healthz"), 20, proc.logs)
    token_file = "sandbox-admin-token" if in_sandbox else "platform-admin-token"
    return Platform(proc, url, (state / token_file).read_text().strip())


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, verify=POLL_TLS).status_code == 200
    except httpx.TransportError:
        return False


def deliver_env(platform: Platform, database_url: str, state: Path, **extra: str) -> dict[str, str]:
    """A worker with short timings: 1 s timeout, backoff from 0.2 s to 1 s, polls every 50 ms; no tenant file (an
    empty tenants directory): the platform's destinations only."""
    (state / "no-tenant-files").mkdir(parents=True, exist_ok=True)
    return base_env(**{
        "DATABASE_URL": database_url,
        "TENANTCTL_STATE_DIR": str(state),
        "TENANTCTL_TENANTS": str(state / "no-tenant-files"),
        "TENANTCTL_DELIVERY_URL_HOSPITABLE": platform.destination("hospitable"),
        "TENANTCTL_DELIVERY_URL_WHATSAPP": platform.destination("whatsapp"),
        "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP": "true",
        "TENANTCTL_DELIVERY_TIMEOUT_S": "1",
        "TENANTCTL_DELIVERY_BASE_DELAY_S": "0.2",
        "TENANTCTL_DELIVERY_MAX_DELAY_S": "1",
        "TENANTCTL_DELIVERY_POLL_S": "0.05",
        "TENANTCTL_DELIVERY_CONCURRENCY": "4",
        # The suite keeps both cores busy: a worker yielding to it would only slow the tests down.
        "TENANTCTL_DELIVERY_NICE": "0",
        **extra,
    })


def start_deliver(root: Path, env: dict[str, str], name: str = "deliver", *args: str) -> Proc:
    proc = spawn(["deliver", *args], root / f"{name}.log", env, root)
    wait_until(lambda: "deliver: worker" in proc.logs() or proc.proc.poll() is not None, 20, proc.logs)
    assert proc.proc.poll() is None, proc.logs()
    return proc


def wait_until(check: Callable[[], bool], timeout: float, explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s\n{explain()[-4000:]}"
        time.sleep(0.05)


def accepted(n: int, *, start: int = 0, tenant: str = "acme", provider: str = "hospitable",
             at: datetime | None = None) -> list[WebhookRecord]:
    when = at or datetime.now(UTC)
    return [WebhookRecord(received_at=when, tenant=tenant, provider=provider, outcome="accepted", status_code=200,
                          event_id=f"evt-{i}", headers={"content-type": "application/json"},
                          body=f'{{"id":"evt-{i}","n":{i}}}', body_size=len(f'{{"id":"evt-{i}","n":{i}}}'))
            for i in range(start, start + n)]


def insert(engine: Engine, records: list[WebhookRecord]) -> None:
    with begin_write(engine) as conn:
        write_batch(conn, records)


@dataclass
class Stack:
    platform: Platform
    database_url: str
    engine: Engine
    root: Path
    procs: list[Proc] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return deliver_env(self.platform, self.database_url, self.root / "state", **extra)

    def deliver(self, name: str = "deliver", *args: str, **extra: str) -> Proc:
        proc = start_deliver(self.root, self.env(**extra), name, *args)
        self.procs.append(proc)
        return proc
