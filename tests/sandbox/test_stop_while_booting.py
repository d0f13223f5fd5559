"""`tenantctl sandbox serve --worker-class gevent` stopped while its worker boots (a script that starts and stops
it at once) stops at once, not after its 5 s graceful timeout. Through the real command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tenantctl.commands.sandbox import SHUTDOWN_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_sigterm_while_the_sandboxs_gevent_worker_boots_stops_it_at_once(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")},
           "TENANTCTL_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", "serve", "--port", str(_free_port()),
                           "--worker-class", "gevent", "--no-access-log"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        said = b""
        deadline = time.monotonic() + 30
        while b"Booting worker" not in said:  # the worker forked: it is patching, not yet handling signals
            assert proc.poll() is None and time.monotonic() < deadline, said.decode(errors="replace")
            said += os.read(proc.stdout.fileno(), 4096)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 10)
        took = time.monotonic() - began
        said += proc.stdout.read()
    assert took < SHUTDOWN_TIMEOUT_S / 2, f"stopped after {took:.1f} s:\n{said.decode(errors='replace')}"
