"""A new user's first minutes: typos get click's usage and hint (exit 1, never 2), no colour when asked,
machine-readable lists, `list` without the key, `runs` to read what plan and apply recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.ci_repo import make_ci_repo
from tests.conftest import EXAMPLES, RunCli


@pytest.mark.parametrize(("args", "says"), [
    (["plan", "--frce"], "No such option: --frce"),
    (["plna"], "No such command 'plna'. Did you mean 'plan'?"),
    (["lock", "list", "--fromat", "json"], "No such option: --fromat"),
])
def test_a_typo_prints_usage_and_a_hint_with_exit_1(cli: RunCli, args: list[str], says: str) -> None:
    r = cli(*args)
    assert r.code == 1  # 2 would read as "the plan has changes"
    assert "Usage: tenantctl" in r.err and "--help' for help." in r.err and says in r.err


def test_list_reads_the_plain_fields_without_the_key(cli: RunCli) -> None:
    env = {"SOPS_AGE_KEY_FILE": "/nonexistent", "SOPS_AGE_KEY": ""}
    text = cli("--tenants", str(EXAMPLES), "list", env=env)
    assert text.code == 0, text.all
    assert "blue-harbor" in text.out and "hospitable, whatsapp, nuki, beds24" in text.out
    doc = json.loads(cli("--tenants", str(EXAMPLES), "list", "--format", "json", env=env).out)
    acme = next(t for t in doc["tenants"] if t["slug"] == "acme")
    assert acme["locks"] == 3 and acme["encrypted"] is True and "twon" in acme["providers"]


@pytest.mark.parametrize("how", [{"NO_COLOR": "1"}, {"TERM": "dumb"}, {}])
def test_no_colour_on_request_in_tables_help_and_errors(cli: RunCli, how: dict[str, str]) -> None:
    flag = [] if how else ["--no-color"]
    for args in (["--tenants", str(EXAMPLES), "list"], ["plan", "--help"], ["plan", "--frce"]):
        r = cli(*flag, *args, env={"FORCE_COLOR": "1", **how})  # colour forced on: only the opt-out may stop it
        assert "\x1b[" not in r.all, (how, args)


def test_colour_is_forced_on_without_an_opt_out(cli: RunCli) -> None:
    # The counter-test: the environment above would colour, so the opt-outs are what removed it.
    r = cli("--tenants", str(EXAMPLES), "list", env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    assert "\x1b[" in r.all


def test_health_and_lock_list_speak_json(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    health = ci.run("health", "--format", "json")
    doc = json.loads(health.out)
    assert health.code == doc["exit_code"]  # docs/health.md, format_version 1
    assert {r["tenant"] for r in doc["rows"]} >= {"acme", "blue-harbor"}
    assert all({"tenant", "provider", "address", "health", "sync", "detail", "hint"} <= set(r) for r in doc["rows"])
    assert json.loads(ci.run("lock", "list", "--format", "json").out) == []


def test_runs_list_and_show_what_plan_and_apply_recorded(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    assert ci.run("plan").code == 2
    assert ci.run("apply", "--auto-approve").code == 0
    listed = json.loads(ci.run("runs", "list", "--format", "json").out)
    assert [(r["kind"], r["status"]) for r in listed] == [("apply", "succeeded"), ("plan", "succeeded")]
    apply_run = listed[0]
    assert "@" in apply_run["actor"] and apply_run["plan_checksum"].startswith("sha256:")
    shown = json.loads(ci.run("runs", "show", str(apply_run["id"]), "--format", "json").out)
    assert shown["changes"] and all(c["outcome"] == "applied" for c in shown["changes"])
    assert any(c["address"] == "nuki.decentral_webhook[acme]" and c["action"] == "create"
               for c in shown["changes"])
    text = ci.run("runs", "show", str(apply_run["id"]))
    assert f"run {apply_run['id']}: apply, succeeded" in text.out and "nuki.decentral_webhook[acme]" in text.out
    assert "apply" in ci.run("runs", "list").out
    missing = ci.run("runs", "show", "999")
    assert missing.code == 1 and "no run 999" in missing.err


def _plan_on_a_terminal(ci_env: dict[str, str], cwd: Path, *flags: str) -> str:
    """`tenantctl plan` with its output on a pseudo-terminal (where colour is normally on)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "tenantctl", *flags, "plan"], cwd=cwd, env=ci_env,
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        p.wait(120)
    finally:
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_the_plan_renderer_colours_a_terminal_unless_told_not_to(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    env = {k: v for k, v in ci.env().items() if k not in ("NO_COLOR", "TERM")} | {"TERM": "xterm-256color"}
    assert "\x1b[3" in _plan_on_a_terminal(env, ci.repo)  # the +/~/- lines are coloured
    for how, flags in (({"NO_COLOR": "1"}, ()), ({"TERM": "dumb"}, ()), ({}, ("--no-color",))):
        out = _plan_on_a_terminal(env | how, ci.repo, *flags)
        assert "nuki.decentral_webhook[acme]" in out
        assert "\x1b[" not in out, how or flags
