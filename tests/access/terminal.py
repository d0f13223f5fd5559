"""Run `tenantctl` with its stdout on a pseudo-terminal, as a person at a terminal would."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run_on_tty(*args: str, env: dict[str, str], cwd: Path = REPO) -> tuple[int, str, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", *args], stdout=follower, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **env})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(), err.decode()
