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
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def _healthcheck_command() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M)
    assert found
    return [sys.executable if w == "python" else w for w in json.loads(found.group(1))]


def _healthy(url: str) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, run here with TENANTCTL_HEALTH_URL=url."""
    env = {**os.environ, "TENANTCTL_HEALTH_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(_healthcheck_command(), env=env, capture_output=True, text=True, timeout=30, check=False)


def test_the_image_runs_unprivileged_and_checks_readiness() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("root", "0:", "0\n")) and user[-1] != "0"
    assert "HEALTHCHECK" in text and "TENANTCTL_HEALTH_URL=http://127.0.0.1:8000/readyz" in text
    assert "TENANTCTL_DELIVER_METRICS_PORT=9101" in text and "http://127.0.0.1:9101/metrics" in text
    assert _dockerfile_command() == ["tenantctl", "serve"]


class _Metrics(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("up", "healthy"), [("1.0", True), ("0.0", False)])
def test_the_workers_health_check_fails_when_it_cannot_read_its_database(up: str, healthy: bool) -> None:
    """delivery/metrics.py reads the queue from the database on each scrape: 0 when it could not."""
    handler = type("H", (_Metrics,), {"body": (
        "# HELP tenantctl_delivery_queue_up 1 when the queue could be read on this scrape.\n"
        f"# TYPE tenantctl_delivery_queue_up gauge\ntenantctl_delivery_queue_up {up}\n").encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        probe = _healthy(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert (probe.returncode == 0) is healthy, probe.stderr
    assert healthy or "cannot read its database" in probe.stderr
    assert _healthy(f"http://127.0.0.1:{free_port()}/readyz").returncode == 1  # nothing listens


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


def _unit_env(stack: Stack, tmp_path: Path, **test: str) -> dict[str, str]:
    """.env.example's values, but for what an operator must fill in (the database, the destinations and their
    secret, the tenant files) and TEST (free ports)."""
    filled_in = {k: v for k, v in stack.env().items()
                 if k in ("DATABASE_URL", "TENANTCTL_DELIVERY_SECRETS", "TENANTCTL_DELIVERY_ALLOW_LOOPBACK_HTTP",
                          "TENANTCTL_STATE_DIR") or k.startswith("TENANTCTL_DELIVERY_URL_")}
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("TENANTCTL_", "PROMETHEUS_", "SOPS_", "DATABASE_URL"))}
    (tmp_path / "tenants").mkdir(exist_ok=True)
    return {**base, **_documented_env(), **filled_in, "TENANTCTL_WORKERS": "1",
            "TENANTCTL_TENANTS": str(tmp_path / "tenants"), **test}


def test_a_worker_whose_metrics_port_is_taken_says_which_setting(sqlite_stack: Stack, tmp_path: Path) -> None:
    """Two workers on one host with the env file's one port: the second exits 1 naming the setting (and
    Restart=always retries it), not with a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = _unit_env(sqlite_stack, tmp_path, TENANTCTL_DELIVER_METRICS_PORT=str(taken.getsockname()[1]))
        p = subprocess.run(_expand(_unit("tenantctl-deliver.service")["ExecStart"], env), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1, p.stderr
    assert "cannot serve metrics on 127.0.0.1:" in p.stderr and "TENANTCTL_DELIVER_METRICS_PORT" in p.stderr
    assert "Traceback" not in p.stderr


def test_the_units_and_the_entrypoint_start_serve_and_deliver(sqlite_stack: Stack, tmp_path: Path) -> None:
    """The units' commands with .env.example's values, but for what an operator must fill in (the database,
    the destinations and their secret, the tenant files) and free ports for the test."""
    stack = sqlite_stack
    port, metrics = free_port(), free_port()
    env = _unit_env(stack, tmp_path, TENANTCTL_BIND=f"127.0.0.1:{port}", TENANTCTL_DELIVER_METRICS_PORT=str(metrics))
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
        # The image's health check of each: the server's /readyz, the worker's metrics port.
        for url in (f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{metrics}/metrics"):
            probe = _healthy(url)
            assert probe.returncode == 0, (url, probe.stderr)
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



def test_docs_deploy_md_states_what_the_files_say() -> None:
    """docs/deploy.md quotes the units' and the image's values: they must be the files' own."""
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    serve, deliver = _unit("tenantctl-serve.service"), _unit("tenantctl-deliver.service")
    for unit in (serve, deliver):
        assert f"`TimeoutStopSec={unit['TimeoutStopSec']}`" in doc and f"`Restart={unit['Restart']}`" in doc
    assert f"`CPUWeight={deliver['CPUWeight']}`" in doc and "CPUWeight" not in serve
    assert serve["EnvironmentFile"] == deliver["EnvironmentFile"] and f"`{serve['EnvironmentFile']}`" in doc
    assert f"`WorkingDirectory={serve['WorkingDirectory']}`" in doc
    text = (DEPLOY / "Dockerfile").read_text()
    image_env = re.findall(r"^(?:ENV)?\s+(TENANTCTL_\w+=\S+|SOPS_AGE_KEY_FILE=\S+)(?: \\)?$", text, re.M)
    assert len(image_env) == 6, image_env
    for setting in image_env:
        assert f"`{setting}`" in doc, setting
    health = re.search(r"HEALTHCHECK --interval=(\d+)s --timeout=(\d+)s .*--retries=(\d+)", text)
    assert health and f"every {health[1]} s, {health[2]} s timeout, unhealthy after {health[3]} failures" in doc
    assert re.search(r"--uid (\d+)", text)[1] in doc  # type: ignore[index]
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
