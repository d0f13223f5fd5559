"""`kill -USR2` of the webhook server starts a new master (gunicorn's binary upgrade) that serves on the same
port: the old master can then be stopped with no port left unserved (tenantctl/commands/serve.py)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from .helpers import tenant_dicts
from .server_harness import make_tenants_dir, start_server

pytestmark = pytest.mark.fault


def test_usr2_starts_a_new_master_that_serves_after_the_old_one_stops(tmp_path: Path) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()))
    new_master = None
    try:
        server.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        while new_master is None:
            masters = {int(pid) for pid in re.findall(r"\[(\d+)\] \[INFO\] Listening at", server.logs())}
            new_master = next(iter(masters - {server.proc.pid}), None)
            assert "Error" not in server.logs(), server.logs()[-3000:]
            assert time.monotonic() < deadline, f"no new master after USR2:\n{server.logs()[-3000:]}"
            time.sleep(0.1)
        server.wait_for_log("webhook app ready", count=4, timeout=60)  # the new master's two workers
        server.stop()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
        if new_master is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(new_master, signal.SIGTERM)
