"""Ctrl-C while a command is still starting (its imports, before it has a handler of its own) ends it with one
line, not a Python traceback, and still as an interrupt: the shell sees the process ended by SIGINT (status 130).
Through the real program, as an operator's terminal sends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import in_tenantctls_imports

ROOT = Path(__file__).resolve().parents[2]


def _interrupt_while_starting(args: list[str], tmp_path: Path,
                              sig: signal.Signals = signal.SIGINT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
    env.update({"TENANTCTL_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)})
    # A shell starts a foreground command with SIGINT at its default, whatever this test runner was given.
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.monotonic() + 30
    while not in_tenantctls_imports(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("args", [["deliver"], ["serve"], ["sandbox", "serve", "--port", "0"], ["validate"]])
def test_ctrl_c_during_the_start_says_interrupted_in_one_line(args: list[str], tmp_path: Path) -> None:
    done = _interrupt_while_starting(args, tmp_path)
    if done.returncode == 130 or (done.returncode == 0 and args != ["validate"]):
        pytest.skip(f"the command had its own handler before the signal came ({done.returncode}): not the start")
    assert done.returncode == -signal.SIGINT, done.stderr
    assert done.stderr == "tenantctl: interrupted\n"
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("args", [["deliver"], ["serve"], ["sandbox", "serve", "--port", "0"],
                                  ["sandbox", "platform", "--port", "0"]])
def test_a_stop_during_a_services_start_ends_it_as_a_stop_does_once_it_runs(args: list[str], tmp_path: Path) -> None:
    """SIGTERM (systemd's stop, a container's) before the service has its own handler: exit 0, as once it runs,
    not killed by the signal."""
    done = _interrupt_while_starting(args, tmp_path, signal.SIGTERM)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_command_that_is_no_service_still_ends_by_the_signal(tmp_path: Path) -> None:
    done = _interrupt_while_starting(["validate"], tmp_path, signal.SIGTERM)
    assert done.returncode == -signal.SIGTERM, done.stderr


def test_ctrl_c_while_a_command_runs_says_interrupted_too(tmp_path: Path) -> None:
    """typer turns it into exit 130 without a word; the line is the same as during the start."""
    import socket

    from tests.conftest import DEMO_KEY, EXAMPLES

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers: the command waits on it
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTCTL_")}
        env.update({"TENANTCTL_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(ROOT),
                    "SOPS_AGE_KEY_FILE": str(DEMO_KEY)})
        proc = subprocess.Popen(
            [sys.executable, "-m", "tenantctl", "--tenants", str(EXAMPLES), "simulate", "booking", "acme",
             "--timeout", "60", "--server", f"http://127.0.0.1:{silent.getsockname()[1]}"],
            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
        silent.settimeout(30)
        conn, _ = silent.accept()  # the request is on its way: the command runs, in its own code
        with conn:
            time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "tenantctl: interrupted"
    assert "Traceback" not in out + err
