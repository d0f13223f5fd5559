"""`tenantctl access maintenance`: a temporary code on a property's locks, printed once to a terminal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.access.terminal import run_on_tty
from tests.conftest import RunCli


def _env(d: Path) -> dict[str, str]:
    return {"TENANTCTL_SANDBOX_INPROCESS": str(d.parent / "world.json"),
            "TENANTCTL_STATE_DIR": str(d.parent / "state"), "TENANTCTL_RETRY_BASE_S": "0.01"}


def _maintenance_auths(d: Path) -> list[dict[str, object]]:
    world = json.loads((d.parent / "world.json").read_text())
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if str(node.get("name", "")).startswith("tc:mnt:"):
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(world)
    return found


def test_a_maintenance_code_is_issued_on_every_lock_of_the_property_and_printed_once(
        cli: RunCli, examples_copy: Path) -> None:
    env = _env(examples_copy)
    assert cli("--tenants", str(examples_copy), "sandbox", "seed", "--out", env["TENANTCTL_SANDBOX_INPROCESS"],
               env=env).code == 0
    code, out, err = run_on_tty("--tenants", str(examples_copy), "access", "maintenance", "acme", "old-town-2",
                                "--for", "2h", "--name", "plumber", "--sandbox", env=env)
    assert code == 0, err + out
    auths = _maintenance_auths(examples_copy)
    assert sorted(a["smartlock_id"] for a in auths) == [17010001, 17010002]  # type: ignore[type-var]
    [value] = {str(a["code"]) for a in auths}
    assert out.count(value) == 1 and f"maintenance code: {value}" in out
    assert len(value) == 6 and set(value) <= set("123456789") and not value.startswith("12")
    assert {a["name"] for a in auths} == {"tc:mnt:plumber"}
    until = datetime.fromisoformat(str(auths[0]["allowed_until_date"]).replace("Z", "+00:00"))
    assert timedelta(hours=1, minutes=58) < until - datetime.now(UTC) <= timedelta(hours=2)
    assert "Europe/Bratislava" in out

    # The next plan keeps it (information only) while it is valid.
    r = cli("--tenants", str(examples_copy), "plan", "--sandbox", "-t", "acme", "-p", "nuki", env=env)
    assert "maintenance code 'tc:mnt:plumber' valid until" in r.out, r.all
    assert "expired" not in r.out
    assert value not in r.all


def test_without_a_terminal_nothing_is_issued(cli: RunCli, examples_copy: Path) -> None:
    env = _env(examples_copy)
    r = cli("--tenants", str(examples_copy), "access", "maintenance", "acme", "old-town-2", "--for", "2h",
            "--sandbox", env=env)
    assert r.code == 1 and "terminal only" in r.err
    assert not (examples_copy.parent / "world.json").exists()


def test_a_bad_duration_or_property_is_refused(examples_copy: Path, cli: RunCli) -> None:
    env = _env(examples_copy)
    code, _, err = run_on_tty("--tenants", str(examples_copy), "access", "maintenance", "acme", "old-town-2",
                              "--for", "forever", "--sandbox", env=env)
    assert code == 1 and "not a duration" in err
    code, _, err = run_on_tty("--tenants", str(examples_copy), "access", "maintenance", "acme", "attic",
                              "--for", "2h", "--sandbox", env=env)
    assert code == 1 and "no property with Nuki locks" in err
