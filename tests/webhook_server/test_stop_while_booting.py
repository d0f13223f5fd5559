"""`kill -TERM` of the webhook server while its workers are still booting (a deploy that stops it right
after a start, `systemctl restart` twice) stops it at once, not after the graceful timeout: a worker that
gets the master's SIGTERM before it has set up its own signal handling still ends. Through the real server."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .helpers import tenant_dicts
from .server_harness import make_tenants_dir, start_server

GRACEFUL_S = 10  # the harness's TENANTCTL_GRACEFUL_TIMEOUT: the wait a worker that missed the signal costs


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_sigterm_while_the_workers_boot_stops_the_server_well_within_the_graceful_timeout(
        tmp_path: Path, worker_class: str) -> None:
    tenants = make_tenants_dir(tmp_path, tenant_dicts()[:1])
    for attempt in range(3):  # the signal lands at a different point of each worker's boot
        root = tmp_path / f"start-{attempt}"
        root.mkdir()
        server = start_server(root, tenants, wait=False, TENANTCTL_WORKER_CLASS=worker_class)
        try:
            server.wait_for_log("Booting worker with pid", count=2, timeout=60)
        finally:
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(GRACEFUL_S + 10)
        took = time.monotonic() - started
        assert took < GRACEFUL_S / 2, f"stop took {took:.1f} s (attempt {attempt}):\n{server.logs()[-3000:]}"
