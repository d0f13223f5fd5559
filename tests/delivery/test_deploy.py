"""deploy/: the systemd units' ExecStart commands and the image's entrypoint, run as plain processes and probed;
the image itself is built only where a container runtime answers and already holds its base image."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .harness import ROOT, Stack, free_port, wait_until

DEPLOY = ROOT / "deploy"
TENANTCTL = str(Path(sys.executable).parent / "tenantctl")


def _unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser["Service"]


def _expand(command: str, env: dict[str, str]) -> list[str]:
    """systemd's ${VAR} expansion, and the installed tenantctl in place of /opt/tenantctl's."""
    words = shlex.split(re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], command))
    return [TENANTCTL if w == "/opt/tenantctl/bin/tenantctl" else w for w in words]


def _dockerfile_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entry and cmd
    return [*json.loads(entry.group(1)), *json.loads(cmd.group(1))]


def test_the_image_runs_unprivileged_and_checks_readiness() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("root", "0:", "0\n")) and user[-1] != "0"
    assert "HEALTHCHECK" in text and "TENANTCTL_HEALTH_URL=http://127.0.0.1:8000/readyz" in text
    assert _dockerfile_command() == ["tenantctl", "serve"]


def test_the_worker_unit_yields_the_cpu_to_the_server_unit() -> None:
    """Each unit is a cgroup of its own, where niceness orders only the unit's threads: the weight orders them."""
    assert int(_unit("tenantctl-deliver.service")["CPUWeight"]) < int(
        _unit("tenantctl-serve.service").get("CPUWeight", "100"))


def test_the_units_and_the_entrypoint_start_serve_and_deliver(sqlite_stack: Stack, tmp_path: Path) -> None:
    stack = sqlite_stack
    port, metrics = free_port(), free_port()
    env = {**stack.env(), "TENANTCTL_BIND": f"127.0.0.1:{port}", "TENANTCTL_DELIVER_METRICS_PORT": str(metrics),
           "TENANTCTL_WORKERS": "1", "TENANTCTL_TENANTS": str(tmp_path / "tenants")}
    (tmp_path / "tenants").mkdir()
    serve_unit, deliver_unit = _unit("tenantctl-serve.service"), _unit("tenantctl-deliver.service")
    assert serve_unit["User"] == deliver_unit["User"] == "tenantctl"
    # The image's default command is the serve unit's: one test of both.
    assert _expand(serve_unit["ExecStart"], env)[1:] == _dockerfile_command()[1:]
    procs = []
    try:
        for unit in (serve_unit, deliver_unit):
            with (tmp_path / f"{len(procs)}.log").open("wb") as log:
                procs.append(subprocess.Popen(_expand(unit["ExecStart"], env), env=env, cwd=tmp_path, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        wait_until(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, 30,
                   (tmp_path / "0.log").read_text)
        wait_until(lambda: _status(f"http://127.0.0.1:{metrics}/metrics") == 200, 30,
                   (tmp_path / "1.log").read_text)
        for proc, unit in zip(procs, (serve_unit, deliver_unit), strict=True):
            assert unit["KillSignal"] == "SIGTERM"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(int(unit["TimeoutStopSec"])) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.TransportError:
        return 0


def _runtime_with_base_image() -> str | None:
    for runtime in ("docker", "podman"):
        exe = shutil.which(runtime)
        if exe and subprocess.run([exe, "image", "inspect", "python:3.11-slim"], capture_output=True,
                                  timeout=20, check=False).returncode == 0:
            return exe
    return None


@pytest.mark.skipif(_runtime_with_base_image() is None,
                    reason="no container runtime with python:3.11-slim present (the build never pulls)")
def test_the_image_builds() -> None:
    exe = _runtime_with_base_image()
    assert exe is not None
    built = subprocess.run([exe, "build", "--pull=false", "-f", str(DEPLOY / "Dockerfile"), "-t", "tenantctl:test",
                            str(ROOT)], capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-3000:]

