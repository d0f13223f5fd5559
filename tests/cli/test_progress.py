"""Live progress of plan / apply / health: on stderr only, one line per tenant in CI, a cleared display on
a terminal, and nothing with --quiet; stdout is the same either way."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli._sandbox_cli import SandboxCli, make_sandbox_cli
from tests.conftest import REPO


@pytest.fixture
def sb(tmp_path: Path) -> SandboxCli:
    return make_sandbox_cli(tmp_path)


def test_without_a_terminal_each_finished_tenant_is_a_line_on_stderr_and_stdout_is_unchanged(
        sb: SandboxCli) -> None:
    loud = sb.run("plan", "--sandbox")
    quiet = sb.run("plan", "--sandbox", "--quiet")
    assert loud.code == quiet.code == 2
    assert loud.out == quiet.out  # byte-identical
    # --quiet silences progress, never the sandbox-mode warning (issue 9: say loudly where tokens go).
    assert quiet.err.startswith("SANDBOX MODE:") and len(quiet.err.splitlines()) == 1
    lines = [line for line in loud.err.splitlines() if not line.startswith("SANDBOX MODE:")]
    assert sorted(re.sub(r" \(\d/3\)", "", line).split(":")[1].strip() for line in lines) == [
        "acme done", "blue-harbor done", "casa-sol done"]
    assert {line.split("(")[1].split(")")[0] for line in lines} == {"1/3", "2/3", "3/3"}
    assert "plan: acme done" in loud.err and "3 create, 2 update, 1 delete" in loud.err


def test_retry_waits_are_explained_as_they_happen(sb: SandboxCli) -> None:
    faults = {"rate": 0.4, "kinds": ["429"], "providers": ["nuki"], "seed": 3, "retry_after_s": 0}
    env = {"TENANTCTL_SANDBOX_FAULTS": json.dumps(faults), "TENANTCTL_RETRY_BASE_S": "0.1"}
    loud = sb.run("health", "--sandbox", "-p", "nuki", extra_env=env)
    assert re.search(r"^health: nuki: 429, retrying in \d+(?:\.\d)? m?s$", loud.err, re.M), loud.err
    assert "health: acme done" in loud.err
    quiet = sb.run("health", "--sandbox", "-p", "nuki", "-q", extra_env=env)
    assert quiet.err.startswith("SANDBOX MODE:") and len(quiet.err.splitlines()) == 1

    def untimed(text: str) -> str:  # health rows carry their measured durations, which set the columns' widths
        return " ".join(re.sub(r"[\u2500-\u257f]+", " ", re.sub(r"\d+(?:\.\d+)? m?s\b", "T", text)).split())

    assert untimed(quiet.out) == untimed(loud.out)


def test_apply_reports_each_finished_tenant(sb: SandboxCli) -> None:
    r = sb.run("apply", "--sandbox", "--auto-approve", "-p", "nuki")
    assert r.code == 0, r.all
    assert re.search(r"^apply: acme done \(\d/2\): \d+ applied$", r.err, re.M), r.err
    assert "plan: blue-harbor done" in r.err


def _run_on_a_terminal(sb: SandboxCli, *args: str) -> tuple[int, bytes]:
    master, slave = pty.openpty()
    env = {**sb.env, "TENANTCTL_SANDBOX_LATENCY_S": "0.05", "TERM": "xterm-256color", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "tenantctl", "--tenants", str(sb.root / "examples"), *args],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=REPO, close_fds=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=30), out


def test_on_a_terminal_the_progress_display_renders_and_is_cleared(sb: SandboxCli) -> None:
    code, raw = _run_on_a_terminal(sb, "plan", "--sandbox")
    assert code == 2
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode("utf-8", "replace"))  # colours off; erasures kept
    shown = [m.start() for m in re.finditer(r"plan .*\d/3 tenants", text)]
    assert shown, text  # the display: phase, bar, done/total
    assert "GET http://127.0.0.1:8790/" in text  # the current provider call
    erased = text.rfind("\x1b[2K")
    assert erased > shown[-1]  # cleared after its last frame...
    assert text.index("Plan: 5 to create, 2 to update", erased) > erased  # ...before the plan itself is printed
    assert "tenant acme" in text
