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
from dotenv import dotenv_values

from tenancy.settings import Settings

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


def _documented_env() -> dict[str, str]:
    """.env.example as systemd's EnvironmentFile= reads it (an empty value is set, empty): what the serve unit
    tells operators to copy to /etc/tenantctl/tenantctl.env."""
    return {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}


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


def test_the_units_need_only_what_the_env_example_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variable a unit's command line expands is set in .env.example, and every value there is valid:
    an unset or empty one would make systemd pass `--option ""`, refused at each of Restart=always's restarts."""
    documented = _documented_env()
    for name in ("tenantctl-serve.service", "tenantctl-deliver.service"):
        unit = _unit(name)
        for key in ("ExecStart", "ExecReload"):
            for var in re.findall(r"\$\{?(\w+)", unit[key]):
                assert var == "MAINPID" or documented.get(var), f"{name} {key}: ${var} not set in .env.example"
        assert unit["EnvironmentFile"] == "/etc/tenantctl/tenantctl.env"
    for k in [k for k in os.environ if k.startswith(("TENANTCTL_", "DATABASE_URL"))]:
        monkeypatch.delenv(k)
    for k, v in documented.items():
        monkeypatch.setenv(k, v)
    s = Settings(_env_file=None)
    assert s.deliver_metrics_port == int(documented["TENANTCTL_DELIVER_METRICS_PORT"]) > 0
    monkeypatch.setenv("TENANTCTL_DELIVER_METRICS_PORT", "")  # an env file written before the setting existed
    assert Settings(_env_file=None).deliver_metrics_port is None


def test_the_units_and_the_entrypoint_start_serve_and_deliver(sqlite_stack: Stack, tmp_path: Path) -> None:
    """The units' commands with .env.example's values, but for what an operator must fill in (the database,
    the destinations and their secret, the tenant files) and free ports for the test."""
    stack = sqlite_stack
    port, metrics = free_port(), free_port()
    filled_in = {k: v for k, v in stack.env().items()
                 if k in ("DATABASE_URL", "TENANTCTL_DELIVERY_SECRETS", "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP",
                          "TENANTCTL_STATE_DIR") or k.startswith("TENANTCTL_DELIVERY_URL_")}
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TENANTCTL_", "PROMETHEUS_", "SOPS_", "DATABASE_URL"))}
    env = {**base, **_documented_env(), **filled_in, "TENANTCTL_BIND": f"127.0.0.1:{port}",
           "TENANTCTL_DELIVER_METRICS_PORT": str(metrics), "TENANTCTL_WORKERS": "1",
           "TENANTCTL_TENANTS": str(tmp_path / "tenants")}
    (tmp_path / "tenants").mkdir()
    serve_unit, deliver_unit = _unit("tenantctl-serve.service"), _unit("tenantctl-deliver.service")
    assert serve_unit["User"] == deliver_unit["User"] == "tenantctl"
    # The image's default command is the serve unit's: one test of both.
    assert _expand(serve_unit["ExecStart"], env)[1:] == _dockerfile_command()[1:]
    procs: list[subprocess.Popen[bytes]] = []
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

