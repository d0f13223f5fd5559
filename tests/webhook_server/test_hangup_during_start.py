"""`systemctl reload` (SIGHUP) while `tenantctl serve` starts: during the CLI's imports or the tenant load, before
gunicorn has its handlers. It used to kill the server, silently, and systemd does not restart a unit a SIGHUP
ended; now the server comes up and does the reload it was asked for. Through the real command."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import in_tenantctls_imports

from .helpers import tenant_dicts
from .server_harness import hosp, make_tenants_dir, start_server


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("after_s", [0, 0.5, 1.0])  # the CLI's imports, the tenant load, gunicorn's start
def test_a_sighup_during_the_start_is_held_and_reloads_once_the_server_is_up(tmp_path: Path, after_s: float) -> None:
    server = start_server(tmp_path, make_tenants_dir(tmp_path, tenant_dicts()[:1]), wait=False)
    try:
        deadline = time.monotonic() + 30
        while not in_tenantctls_imports(server.proc.pid):
            assert server.proc.poll() is None and time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.002)
        time.sleep(after_s)
        server.hup()
        deadline = time.monotonic() + 60
        while not _ready(server.url):
            assert server.proc.poll() is None, f"the SIGHUP ended the server ({server.proc.returncode}):\n" \
                                               f"{server.logs()[-3000:]}"
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.1)
        if "Handling signal: hup" not in server.logs():  # it came before gunicorn's handler: held, then done
            server.wait_for_log("a SIGHUP came during the start: reloading the tenants now")
            server.wait_for_log("routing reloaded: 1 tenant(s)")
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert hosp(c, f"e-{after_s}").status_code == 200
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.logs()[-3000:]
