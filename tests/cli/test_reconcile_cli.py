"""plan / apply / health / lock / sandbox through the CLI, end to end against the seeded sandbox.

Most tests run the CLI in process against an in-process sandbox (TENANTCTL_SANDBOX_INPROCESS names the
state file it loads and saves); one starts `tenantctl sandbox serve` for real (slow).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sandbox.nuki import Webhook
from sandbox.world import World
from store import locks, provider_state, runs
from store.engine import make_engine
from tenancy.loader import load_tenants
from tenancy.redact import secret_values
from tenantctl.cli import app
from tests.conftest import DEMO_KEY, EXAMPLES, REPO, RunCli


@dataclass
class Rehearsal:
    root: Path
    world_file: Path
    db_url: str
    secrets: list[str]

    def world(self) -> World:
        return World.from_json(self.world_file.read_text())

    def save(self, world: World) -> None:
        self.world_file.write_text(world.to_json())

    def calls(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.world_file.with_suffix(".calls.json").read_text())
        return data


Run = Callable[..., tuple[int, str]]


@pytest.fixture
def rehearsal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rehearsal:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TENANTCTL_") or name in ("DATABASE_URL", "SOPS_AGE_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(DEMO_KEY))
    monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TENANTCTL_SANDBOX_INPROCESS", str(tmp_path / "world.json"))
    monkeypatch.setenv("TENANTCTL_RETRY_BASE_S", "0.01")
    loaded = load_tenants([tmp_path / "examples"])
    secrets = sorted({s.get_secret_value() for lt in loaded.tenants for s in secret_values(lt.tenant)})
    r = Rehearsal(tmp_path, tmp_path / "world.json", f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}",
                  secrets)
    code, out = run("sandbox", "seed", "--out", str(r.world_file))
    assert code == 0, out
    return r


def run(*args: str, input: str | None = None, stdout_only: bool = False) -> tuple[int, str]:
    """The CLI in process: exit code and its output (stderr included, unless `stdout_only`)."""
    result = CliRunner().invoke(app, ["--tenants", "examples", *args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout if stdout_only else result.output


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [s for s in secrets if len(s) >= 6 and s in text]
    assert not leaked, "a secret leaked"


def db_text(db_url: str) -> str:
    con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    try:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        return "\n".join(repr(row) for t in tables for row in con.execute(f"select * from {t}"))  # noqa: S608
    finally:
        con.close()


def test_rehearsal_plans_applies_and_converges(rehearsal: Rehearsal) -> None:
    code, first = run("plan", "--sandbox")
    assert code == 2, first
    for expected in ("~ whatsapp.phone_webhook[acme/106540352242922]", "+ nuki.keypad_code[acme/17010001/maria]",
                     "~ nuki.keypad_code[acme/17010002/maria]", "+ whatsapp.waba_subscription[blue-harbor]",
                     "+ nuki.decentral_webhook[acme]", "! hospitable.webhook[acme]", "(sensitive) #"):
        assert expected in first
    code, applied = run("apply", "--sandbox", "--auto-approve")
    assert code == 0, applied
    assert "Apply: 8 applied, 0 failed, 0 not attempted: done." in applied
    assert "secret stored encrypted: nuki.webhook_secret in the provider state store" in applied
    code, again = run("plan", "--sandbox")
    assert code == 0, again
    assert "Plan: 0 to create, 0 to update, 0 to delete" in again

    # The webhook secret Nuki returned is in the provider state store, age-encrypted, and equals the live
    # one; the tenant file is untouched.
    db = make_engine(rehearsal.db_url)
    stored = provider_state.decrypt_all(db, provider_state.identities_from_env())
    db.dispose()
    live = [h.secret for a in rehearsal.world().nuki.accounts.values() for h in a.webhooks.values()]
    assert stored[("acme", "nuki.webhook_secret")][0] in live
    reloaded = load_tenants([rehearsal.root / "examples"]).by_slug()["acme"].tenant
    assert reloaded.nuki is not None and reloaded.nuki.webhook_secret is None

    # Every run is recorded: who, the checksum, each change and its outcome.
    db = make_engine(rehearsal.db_url)
    recorded = runs.list_runs(db)
    assert [(r.kind, r.status) for r in reversed(recorded)] == [("plan", "succeeded"), ("apply", "succeeded"),
                                                               ("plan", "no_changes")]
    apply_run = runs.get_run(db, recorded[1].id)
    assert apply_run is not None and "@" in apply_run.actor and apply_run.plan_checksum
    assert sorted(c.outcome for c in apply_run.changes) == ["applied"] * 8
    db.dispose()

    secrets = rehearsal.secrets + live
    for text in (first, applied, again, db_text(rehearsal.db_url)):
        assert_no_secret(text, secrets)


@pytest.mark.parametrize("fmt", ["json", "markdown"])
def test_machine_and_review_formats_hold_no_secret(rehearsal: Rehearsal, fmt: str) -> None:
    code, out = run("plan", "--sandbox", "--format", fmt, stdout_only=True)
    assert code == 2
    assert_no_secret(out, rehearsal.secrets)
    if fmt == "json":
        doc = json.loads(out)
        assert doc["format_version"] == 1 and doc["checksum"].startswith("sha256:")
        changes = [c for i in doc["items"] for c in i["changes"]]
        code_field = next(f for c in changes if c["address"] == "nuki.keypad_code[acme/17010001/maria]"
                          for f in c["fields"] if f["field"] == "code")
        assert code_field["sensitive"] is True and set(code_field["new"]) == {"sensitive", "fingerprint"}
    else:
        assert "<details><summary><code>acme</code>" in out


def test_saved_plan_applies_exactly_and_refuses_when_live_state_moved(rehearsal: Rehearsal) -> None:
    plan_file = rehearsal.root / "reviewed.json"
    assert run("plan", "--sandbox", "--out", str(plan_file))[0] == 2
    assert_no_secret(plan_file.read_text(), rehearsal.secrets)

    world = rehearsal.world()
    world.meta.phones["106540352242922"].override_callback_uri = "https://someone-else.example/hook"
    rehearsal.save(world)
    code, out = run("apply", str(plan_file))
    assert code == 1 and "stale plan" in out and "acme/whatsapp" in out
    assert rehearsal.calls()["writes"] == {}  # nothing was written

    assert run("plan", "--sandbox", "--out", str(plan_file))[0] == 2
    code, out = run("apply", str(plan_file))  # a reviewed plan needs no further confirmation
    assert code == 0, out
    assert run("plan", "--sandbox")[0] == 0

    doc = json.loads(plan_file.read_text())
    doc["items"][0]["live_digest"] = "sha256:0"
    plan_file.write_text(json.dumps(doc))
    code, out = run("apply", str(plan_file))
    assert code == 1 and "edited" in out


def test_a_plan_rewriting_too_much_needs_force(rehearsal: Rehearsal) -> None:
    world = rehearsal.world()
    token = next(iter(world.nuki.accounts))
    for i in range(5):
        world.nuki.add_keypad_code(token, 17010001, f"tc:Old Teammate {i}", 345671 + i)
    rehearsal.save(world)
    code, out = run("apply", "--sandbox", "--auto-approve")
    assert code == 1 and "--force" in out and "acme:" in out
    assert rehearsal.calls()["writes"] == {}
    code, out = run("apply", "--sandbox", "--auto-approve", "--force")
    assert code == 0, out
    assert run("plan", "--sandbox")[0] == 0


def _on_a_terminal(args: list[str], answer: str, cwd: Path) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin (a person at the keyboard) and type ANSWER."""
    import pty

    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([sys.executable, "-m", "tenantctl", "--tenants", "examples", *args], cwd=cwd,
                             stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
        os.write(master, answer.encode())
        out, _ = p.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    return p.returncode, out.decode()


def test_confirmation_is_asked_without_auto_approve(rehearsal: Rehearsal) -> None:
    code, out = _on_a_terminal(["apply", "--sandbox"], "n\n", rehearsal.root)
    assert code == 1 and "cancelled" in out, out
    assert rehearsal.calls()["writes"] == {}
    code, out = _on_a_terminal(["apply", "--sandbox", "--tenant", "blue-harbor"], "y\n", rehearsal.root)
    assert code == 0, out
    assert "acme" not in out.split("Apply these changes?")[-1]


def test_apply_without_a_terminal_says_how_to_approve(rehearsal: Rehearsal) -> None:
    p = subprocess.run([sys.executable, "-m", "tenantctl", "--tenants", "examples", "apply", "--sandbox"],
                       cwd=rehearsal.root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode == 1
    assert "no terminal to confirm on: pass --auto-approve, or apply a reviewed plan" in p.stderr
    assert not rehearsal.world_file.with_suffix(".calls.json").exists()  # not a single provider call


def test_a_held_lock_blocks_apply_and_names_its_holder(rehearsal: Rehearsal) -> None:
    assert run("plan", "--sandbox")[0] == 2  # creates and migrates the database
    db = make_engine(rehearsal.db_url)
    locks.acquire(db, "blue-harbor", "ops@bastion pid 4242")
    code, out = run("apply", "--sandbox", "--auto-approve")
    assert code == 1 and "ops@bastion pid 4242" in out and "tenantctl lock release blue-harbor" in out
    assert rehearsal.calls()["writes"] == {}
    assert [lk.tenant for lk in locks.list_locks(db)] == ["blue-harbor"]  # ours were given back
    code, out = run("lock", "list")
    assert code == 0 and "ops@bastion pid 4242" in out
    assert run("lock", "release", "blue-harbor")[0] == 0
    assert run("lock", "release", "blue-harbor")[0] == 1
    assert run("apply", "--sandbox", "--auto-approve")[0] == 0
    assert locks.list_locks(db) == []
    db.dispose()


@pytest.mark.parametrize("faults", [
    # Every kind, on every provider: reads and refused writes are retried.
    {"rate": 0.35, "kinds": ["429", "500", "timeout", "reset"], "retry_after_s": 0, "seed": 11},
    # Lost answers, 500s and resets on Nuki's writes: each is read back before going on.
    {"rate": 0.4, "kinds": ["500", "lost-response"], "providers": ["nuki"], "retry_after_s": 0, "seed": 3},
])
def test_under_faults_every_report_line_is_true_and_apply_converges(
        rehearsal: Rehearsal, monkeypatch: pytest.MonkeyPatch, faults: dict[str, object]) -> None:
    monkeypatch.setenv("TENANTCTL_SANDBOX_FAULTS", json.dumps(faults))
    code, out = run("apply", "--sandbox", "--auto-approve", "--format", "json", stdout_only=True)
    calls = rehearsal.calls()["calls"]
    assert isinstance(calls, list) and any(c["fault"] for c in calls)
    report = json.loads(out)
    assert (code == 0) == report["ok"]
    by_outcome: dict[str, set[str]] = {}
    for r in report["results"]:
        by_outcome.setdefault(r["outcome"], set()).add(r["address"])
    if "lost-response" in faults["kinds"]:  # type: ignore[operator]
        assert by_outcome.get("confirmed"), report["results"]  # lost answers, found applied by reading back
    db = make_engine(rehearsal.db_url)
    last = runs.get_run(db, runs.list_runs(db, limit=1)[0].id)
    assert last is not None
    assert {(c.address, c.outcome) for c in last.changes} == {(r["address"], r["outcome"])
                                                             for r in report["results"]}
    done = by_outcome.get("applied", set()) | by_outcome.get("confirmed", set())
    undone = set().union(*(by_outcome.get(k, set()) for k in ("failed", "not_applied", "not_attempted")))

    monkeypatch.delenv("TENANTCTL_SANDBOX_FAULTS")
    code, out = run("plan", "--sandbox", "--format", "json", stdout_only=True)
    still = {c["address"] for i in json.loads(out)["items"] for c in i["changes"]
             if c["action"] in ("create", "update", "delete")}
    # Every line was true: what it called done is done, what it called undone is still to do (unknown
    # ones make no claim). The Nuki webhook of a tenant file without its secret is always planned again.
    assert not (still & done)
    assert undone <= still
    for _ in range(2):  # running apply again converges
        if run("apply", "--sandbox", "--auto-approve")[0] == 0:
            break
    assert run("plan", "--sandbox")[0] == 0
    db.dispose()


def test_health_reports_failing_checks_with_exit_1(rehearsal: Rehearsal) -> None:
    code, out = run("health", "--sandbox")
    assert code == 1 and "degraded" in out
    assert_no_secret(out, rehearsal.secrets)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_served_sandbox_end_to_end(rehearsal: Rehearsal, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "TENANTCTL_SANDBOX_INPROCESS"}
    env["TENANTCTL_SANDBOX_URL"] = url
    server = subprocess.Popen([sys.executable, "-m", "tenantctl", "sandbox", "serve", "--threads", "4"],
                              env=env, cwd=rehearsal.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/_sandbox/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.1)
        monkeypatch.delenv("TENANTCTL_SANDBOX_INPROCESS")
        monkeypatch.setenv("TENANTCTL_SANDBOX_URL", url)
        token_file = rehearsal.root / "state" / "sandbox-admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        # The admin endpoints need this run's token; a rebound name (another Host) gets nothing at all.
        assert httpx.get(url + "/_sandbox/state").status_code == 401
        assert httpx.put(url + "/_sandbox/state", content=b"{}").status_code == 401
        assert httpx.get(url + "/_sandbox/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/_sandbox/state", headers={"Authorization": f"Bearer {token}",
                                                           "Host": f"rebound.example:{port}"}).status_code == 421
        assert httpx.get(url + "/nuki/smartlock", headers={"Host": "rebound.example"}).status_code == 421
        assert run("sandbox", "seed")[0] == 0
        state = httpx.get(url + "/_sandbox/state", headers={"Authorization": f"Bearer {token}"})
        assert state.status_code == 200 and state.json()["nuki"]["accounts"]
        monkeypatch.setenv("TENANTCTL_SANDBOX", "1")  # the setting instead of --sandbox
        assert run("plan")[0] == 2
        code, out = run("apply", "--auto-approve")
        assert code == 0, out
        assert run("plan")[0] == 0
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=10)


def test_sandbox_mode_from_a_dotenv_never_sends_tokens_off_this_machine(cli: RunCli, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    (tmp_path / ".env").write_text("TENANTCTL_SANDBOX=1\nTENANTCTL_SANDBOX_URL=http://203.0.113.7:8790\n")
    env = {"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "PYTHONPATH": str(REPO)}
    for command in ("plan", "apply", "health"):
        r = cli("--tenants", "examples", command, "--auto-approve" if command == "apply" else "--sandbox",
                env=env, cwd=tmp_path)
        assert r.code == 1, r.all
        assert "203.0.113.7:8790" in r.err and "not a loopback address" in r.err


def test_sandbox_mode_says_so_on_stderr(cli: RunCli, tmp_path: Path) -> None:
    env = {"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_SANDBOX_INPROCESS": str(tmp_path / "world.json"),
           "TENANTCTL_SANDBOX": "1"}
    r = cli("--tenants", str(EXAMPLES), "plan", "--format", "json", env=env)
    assert "SANDBOX MODE" in r.err and "127.0.0.1:8790" in r.err
    assert "SANDBOX MODE" not in r.out  # stdout stays a clean JSON plan
    json.loads(r.out)


def test_foreign_resources_are_deleted_only_with_prune_and_shown_first(rehearsal: Rehearsal, tmp_path: Path) -> None:
    world = rehearsal.world()
    account = next(iter(world.nuki.accounts.values()))
    hid = world.nuki.next_webhook_id
    world.nuki.next_webhook_id += 1
    account.webhooks[hid] = Webhook(hid, "https://old-vendor.example/hook", ["DEVICE_LOGS"], "old-secret")
    rehearsal.save(world)

    def foreign(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for i in doc["items"] for c in i["changes"] if c["address"].endswith(f"/#{hid}]")]

    code, out = run("plan", "--sandbox", "--format", "json", stdout_only=True)
    [change] = foreign(json.loads(out))
    assert change["action"] == "report" and "--prune deletes it" in change["note"]
    assert run("apply", "--sandbox", "--auto-approve")[0] == 0
    assert hid in next(iter(rehearsal.world().nuki.accounts.values())).webhooks  # untouched without --prune

    saved = tmp_path / "prune.json"
    code, out = run("plan", "--sandbox", "--prune", "--out", str(saved))
    assert code == 2 and "- nuki.decentral_webhook[" in out and "deleted because of --prune" in out
    doc = json.loads(saved.read_text())
    assert doc["prune"] is True and [c["action"] for c in foreign(doc)] == ["delete"]
    # Pruning never reaches people's access: the hand-made keypad code is not planned for deletion.
    assert not [c for i in doc["items"] for c in i["changes"]
                if c["action"] == "delete" and c["kind"] != "decentral_webhook"]
    assert run("apply", str(saved))[0] == 0
    after = rehearsal.world()
    assert hid not in next(iter(after.nuki.accounts.values())).webhooks
    names = {a.name for acc in after.nuki.accounts.values() for lock in acc.smartlocks.values()
             for a in lock.auths.values()}
    assert "Front desk" in names
    assert run("plan", "--sandbox", "--prune")[0] == 0


KILLED_HOLDER = """
import sys, time
from store.engine import make_engine
from store import locks, runs
e = make_engine(sys.argv[1])
run_id = runs.start_run(e, "apply", "ana@laptop", ["blue-harbor"])
locks.acquire(e, "blue-harbor", "ana@laptop pid dying", run_id=run_id)
print(run_id, flush=True)
time.sleep(120)
"""


def test_a_killed_applys_lock_shows_stale_and_is_taken_over_by_name(rehearsal: Rehearsal) -> None:
    assert run("plan", "--sandbox")[0] == 2  # creates and migrates the database
    with subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, rehearsal.db_url], stdout=subprocess.PIPE,
                          text=True, cwd=REPO) as holder:
        assert holder.stdout is not None
        run_id = int(holder.stdout.readline())
        os.kill(holder.pid, 9)
        holder.wait(timeout=10)
    code, out = run("lock", "list")
    assert code == 0 and "ana@laptop pid dying" in out and "stale" in out and f" {run_id} " in out
    db = make_engine(rehearsal.db_url)
    run_record = runs.get_run(db, run_id)
    assert run_record is not None and run_record.status == "aborted"  # looking was enough
    code, out = run("apply", "--sandbox", "--auto-approve")
    assert code == 0, out
    assert "took over the lock of blue-harbor from ana@laptop pid dying" in out
    assert locks.list_locks(db) == []
    db.dispose()
