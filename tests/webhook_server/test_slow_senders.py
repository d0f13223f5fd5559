"""Slow senders cannot hold the server: with more connections that announce a body and never send it
than a worker may hold, /healthz and /readyz keep answering and real webhooks are stored; each slow
request ends with a 408 within the request deadline, and the refusal is recorded. Real server, loopback."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .helpers import tenant_dicts
from .server_harness import accepted_events, hosp, make_tenants_dir, start_server

# A fault drill (slow and stalled senders): run by `make faults` and CI, apart from `make test`.
pytestmark = pytest.mark.fault

CONNECTIONS_PER_WORKER = 40
SLOW = 150  # more than the two workers together may hold
DEADLINE_S = 3


def _slow_sender(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              "Content-Length: 1000\r\n\r\n{\"id\":".encode())  # ...and never the rest
    return s


def test_many_slow_bodies_do_not_stop_the_probes_or_real_webhooks(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                          TENANTCTL_WORKER_CONNECTIONS=str(CONNECTIONS_PER_WORKER),
                          TENANTCTL_REQUEST_TIMEOUT_S=str(DEADLINE_S), TENANTCTL_ACCESS_LOG="off")
    port = int(server.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    try:
        slow = [_slow_sender(port, "/api/webhooks/hospitable/t/acme") for _ in range(SLOW)]
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for probe in ("/healthz", "/readyz"):
                t0 = time.monotonic()
                assert c.get(probe).status_code == 200
                assert time.monotonic() - t0 < DEADLINE_S, probe
            assert hosp(c, "real-during-flood").status_code == 200
        assert time.monotonic() - started < 2 * DEADLINE_S

        answers = []
        for s in slow[:10]:
            s.settimeout(2 * DEADLINE_S + 2)
            answers.append(s.recv(200))
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
    finally:
        for s in slow:
            s.close()
        server.stop()
    assert accepted_events(server) == ["real-during-flood"]
    with sqlite3.connect(server.state / "tenantctl.db") as conn:
        timeouts = conn.execute("SELECT sum(1 + repeats) FROM webhook_log WHERE status_code = 408 "
                                "AND reason = 'body-timeout'").fetchone()[0]
    assert timeouts and timeouts >= 10


def test_headers_that_never_end_get_408_and_the_connection_closes(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]),
                          TENANTCTL_REQUEST_TIMEOUT_S=str(DEADLINE_S))
    port = int(server.url.rsplit(":", 1)[1])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S + 5) as s:
            t0 = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            answer = s.recv(200)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert time.monotonic() - t0 < DEADLINE_S + 2
            assert s.recv(200) == b""  # closed
    finally:
        server.stop()
