"""A report's severity is a field of the change: JSON and Markdown plans carry it, notes hold no prefix."""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.model import Action, Change, Severity, report
from tests.cli._sandbox_cli import make_sandbox_cli


def test_json_plan_carries_severity_and_the_note_has_no_prefix(tmp_path: Path) -> None:
    sb = make_sandbox_cli(tmp_path)
    r = sb.run("plan", "--sandbox", "-q", "--format", "json")
    assert r.code == 2, r.all
    reports = {ch["address"]: ch for item in json.loads(r.out)["items"] for ch in item["changes"]
               if ch["action"] == "report"}
    unmapped = reports["hospitable.property[acme/00000000-0000-4000-8000-00000000beef]"]
    assert unmapped["severity"] == "info"
    assert unmapped["note"] == "Hospitable property 'Unmapped Cottage' is not mapped by any tenant property"
    assert all(ch["severity"] in ("error", "info") for ch in reports.values())
    assert not any(str(ch.get("note", "")).startswith(("error:", "info:")) for ch in reports.values())


def test_text_and_markdown_plans_show_the_severity_before_the_note(tmp_path: Path) -> None:
    sb = make_sandbox_cli(tmp_path)
    line = "info: Hospitable property 'Unmapped Cottage' is not mapped by any tenant property"
    assert line in sb.run("plan", "--sandbox", "-q").out
    assert line in sb.run("plan", "--sandbox", "-q", "--format", "markdown").out


def test_is_error_reads_the_field_and_still_understands_an_old_prefixed_note() -> None:
    err = report(Severity.ERROR, "nuki", "lock", "acme", "nuki.lock[acme/1]", "lock 1 is not on the account")
    info = report(Severity.INFO, "nuki", "lock", "acme", "nuki.lock[acme/2]", "error: looks bad, is not")
    legacy = Change(Action.REPORT, "nuki", "lock", "acme", "nuki.lock[acme/3]", note="error: old style")
    assert err.is_error and not info.is_error and legacy.is_error
    assert err.shown_note == "error: lock 1 is not on the account"
    assert not Change(Action.UPDATE, "nuki", "lock", "acme", "a", severity=Severity.ERROR).is_error
