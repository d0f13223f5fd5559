"""A secret's fingerprint is one value for every reader: `show`, the plan's manual-step hint and `health`
print the same one for the Hospitable webhook secret, before and after an apply stores Nuki's issued
webhook secret in the provider state store (tenancy/fingerprint.py, ISSUED)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli._sandbox_cli import make_sandbox_cli


def test_show_plan_and_health_print_one_fingerprint_before_and_after_apply(tmp_path: Path) -> None:
    s = make_sandbox_cli(tmp_path)
    shown = s.run("show", "acme")
    assert shown.code == 0, shown.all
    found = re.search(r"hospitable:\n(?:  .*\n)*?  webhook_secret: '\(sensitive\) #([0-9a-f]{12})'", shown.out)
    assert found, shown.out
    hint = f"fingerprint #{found.group(1)}"

    before = s.run("plan", "--sandbox", "--tenant", "acme")
    assert before.code == 2 and hint in before.all, before.all
    applied = s.run("apply", "--sandbox", "--auto-approve")
    assert applied.code == 0, applied.all
    assert "nuki.webhook_secret" in s.run("show", "acme").out  # apply stored Nuki's issued secret

    after = s.run("plan", "--sandbox", "--tenant", "acme")
    assert hint in after.all, after.all
    assert f"#{found.group(1)}" in s.run("show", "acme").out
    health = s.run("health", "--sandbox", "--tenant", "acme", "--provider", "hospitable", "--format", "json")
    assert hint in health.all, health.all
