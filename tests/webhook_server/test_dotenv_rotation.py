"""README's Meta app secret rotation with the secrets in .env: put the new one first, `kill -HUP` the
server, and webhooks signed with it are accepted (the value `tenantctl` copied from .env at start must not
hide the new one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from store.migrate import upgrade

from .helpers import dumps, sign_hex, tenant_dicts
from .server_harness import free_port, make_tenants_dir, server_env

pytestmark = pytest.mark.fault

OLD, NEW = "meta-app-secret-rotated-away-1", "meta-app-secret-rotated-in-2"


def _wa(url: str, secret: str) -> int:
    body = dumps({"object": "whatsapp_business_account", "entry": []})
    return httpx.post(f"{url}/api/webhooks/wa", content=body, timeout=5, headers={
        "X-Hub-Signature-256": f"sha256={sign_hex(secret, body)}", "Content-Type": "application/json"}).status_code


def test_a_meta_app_secret_rotated_in_dotenv_applies_on_sighup(tmp_path: Path) -> None:
    tenants = make_tenants_dir(tmp_path, tenant_dicts())
    (tmp_path / "state").mkdir()
    upgrade(f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}")
    port = free_port()
    env = server_env(tmp_path / "state", tenants, port)
    del env["TENANTCTL_META_APP_SECRETS"]
    (tmp_path / ".env").write_text(f"TENANTCTL_META_APP_SECRETS={OLD}\n")
    with (tmp_path / "server.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "serve", "--bind", f"127.0.0.1:{port}"],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            try:
                if _wa(url, OLD) == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        (tmp_path / ".env").write_text(f"TENANTCTL_META_APP_SECRETS={NEW},{OLD}\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while _wa(url, NEW) != 200:
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.2)
        assert _wa(url, OLD) == 200  # still accepted until it is removed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
