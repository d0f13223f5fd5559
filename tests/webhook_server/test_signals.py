"""Servers and signals, as an operator sends them: `tenantctl sandbox serve` stopped with SIGTERM leaves
nothing on its port; `kill -HUP` of the webhook server under keep-alive load fails no request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from .helpers import tenant_dicts
from .server_harness import accepted_events, free_port, hosp, make_tenants_dir, start_server

# A fault drill (signals to running servers under load): run by `make faults` and CI, apart from `make test`.
pytestmark = pytest.mark.fault


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_sandbox_serve_stopped_with_sigterm_leaves_no_server(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update(TENANTCTL_STATE_DIR=str(tmp_path / "state"), TENANTCTL_SANDBOX_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        deadline = time.monotonic() + 10
        while _listening(port):
            assert time.monotonic() < deadline, "a sandbox server is still listening after SIGTERM"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sighup_under_keep_alive_load_fails_no_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]), TENANTCTL_ACCESS_LOG="off",
                          TENANTCTL_KEEPALIVE="5")
    statuses: list[int | str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=20) as c:  # one keep-alive connection each
            i = 0
            while not stop.is_set():
                try:
                    statuses.append(hosp(c, f"hup-{n}-{i}").status_code)
                except httpx.TransportError as e:
                    statuses.append(type(e).__name__)
                i += 1
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    try:
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(1.5)
            server.hup()
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        server.stop()
    failed = [s for s in statuses if s != 200]
    assert len(statuses) > 200 and not failed, (len(statuses), failed[:10])
    assert len(accepted_events(server)) == len(statuses)
