"""The pull-request loop through the CLI against the sandbox, in a real git repository made here.

--changed-since picks the tenants a branch changed; the plan comment for exit 0, 1 and 2; the safety limit
is visible at plan time in every format; the merge applies exactly the reviewed plan, a stale one is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sandbox.world import World
from tests.cli.ci_repo import CiRepo, git, make_ci_repo
from tests.conftest import REPO


def _edit_plain(path: Path, old: str, new: str) -> None:
    """A reviewer's hand edit of a plain field (the MAC covers encrypted values only)."""
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _comment(ci: CiRepo, code: int, plan_md: Path, plan_json: Path, errors: Path | None = None) -> str:
    args = [sys.executable, str(REPO / "ci" / "gh.py"), "plan-comment", "--dry-run", "--sha", "a" * 40,
            "--exit-code", str(code), "--plan-md", str(plan_md), "--plan-json", str(plan_json)]
    if errors is not None:
        args += ["--errors", str(errors)]
    p = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60, env=ci.env())
    return p.stdout


def test_changed_since_plans_only_the_tenants_the_branch_changed(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    git(ci.repo, "checkout", "-q", "-b", "feature")
    _edit_plain(ci.tenants / "acme.yaml", "display_name: Acme Stays", "display_name: Acme Stays Ltd")
    ci.commit("acme: new name")
    git(ci.repo, "checkout", "-q", "main")  # main moves on after the branch forked: not the branch's change
    _edit_plain(ci.tenants / "casa-sol.yaml", "slug: casa-sol", "slug: casa-sol  # moved on main")
    ci.commit("casa-sol: comment")
    git(ci.repo, "checkout", "-q", "feature")

    r = ci.run("plan", "--changed-since", "main", "--format", "json")
    assert r.code == 2, r.all
    assert {i["tenant"] for i in json.loads(r.out)["items"]} == {"acme"}

    _edit_plain(ci.tenants / "blue-harbor.yaml", "status: active", "status: active  # uncommitted")
    r = ci.run("plan", "--changed-since", "main", "--format", "json")
    assert {i["tenant"] for i in json.loads(r.out)["items"]} == {"acme", "blue-harbor"}  # the working tree too
    git(ci.repo, "checkout", "-q", "--", "tenants/blue-harbor.yaml")

    (ci.tenants / ".sops.yaml").write_text((ci.tenants / ".sops.yaml").read_text() + "# reviewed\n")
    r = ci.run("plan", "--changed-since", "main", "--format", "json")
    assert {i["tenant"] for i in json.loads(r.out)["items"]} == {"acme", "blue-harbor", "casa-sol"}
    git(ci.repo, "checkout", "-q", "--", "tenants/.sops.yaml")

    git(ci.repo, "checkout", "-q", "main")
    (ci.repo / "README.md").write_text("docs only\n")  # a change that touches no tenant
    empty = ci.root / "empty.json"
    r = ci.run("plan", "--changed-since", "HEAD", "--out", str(empty))
    assert r.code == 0 and "No tenant file changed since HEAD" in r.out, r.all
    merged = ci.run("apply", str(empty))  # its merge applies nothing, and says so
    assert merged.code == 0 and "covers no tenant: nothing to apply" in merged.out, merged.all

    r = ci.run("plan", "--changed-since", "no-such-rev")
    assert r.code == 1 and "no-such-rev" in r.err, r.all


def test_plan_comment_for_no_changes_changes_and_errors(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    md, js, err = tmp_path / "plan.md", tmp_path / "plan.json", tmp_path / "errors.txt"

    r = ci.run("plan", "--format", "markdown", "--out", str(js))
    assert r.code == 2
    md.write_text(r.out)
    body = _comment(ci, 2, md, js)
    checksum = json.loads(js.read_text())["checksum"]
    assert body.startswith("<!-- tenantctl-plan -->") and "**Changes.**" in body
    assert f"Checksum: `{checksum}`" in body and "nuki.decentral_webhook[acme]" in body
    assert "Needs --force" not in body

    assert ci.run("apply", str(js)).code == 0
    r = ci.run("plan", "--format", "markdown", "--out", str(js))
    assert r.code == 0, r.all
    md.write_text(r.out)
    body = _comment(ci, 0, md, js)
    assert "**No changes.**" in body and "Checksum: `sha256:" in body and "```diff" not in body

    _edit_plain(ci.tenants / "acme.yaml", "status: active", "status: bogus")
    r = ci.run("plan", "--format", "markdown", "--out", str(js))
    assert r.code == 1
    md.write_text(r.out)
    err.write_text(r.err + r.out)
    body = _comment(ci, 1, md, js, err)
    assert "**The plan failed**" in body and "status" in body and "acme.yaml" in body


def test_the_safety_limit_is_visible_at_plan_time_in_every_format(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    world = World.from_json((tmp_path / "world.json").read_text())
    token = next(iter(world.nuki.accounts))
    for i in range(5):
        world.nuki.add_keypad_code(token, 17010001, f"tc:Old Teammate {i}", 345671 + i)
    (tmp_path / "world.json").write_text(world.to_json())

    text = ci.run("plan")
    assert text.code == 2 and "Needs --force: this plan passes the safety limit" in text.out, text.all
    assert "acme:" in text.out.split("Needs --force")[1]
    doc = json.loads(ci.run("plan", "--format", "json").out)
    assert doc["safety"]["needs_force"] is True
    assert [v["tenant"] for v in doc["safety"]["violations"]] == ["acme"]
    md = ci.run("plan", "--format", "markdown", "--out", str(tmp_path / "p.json"))
    assert "**Needs --force:**" in md.out
    (tmp_path / "p.md").write_text(md.out)
    body = _comment(ci, 2, tmp_path / "p.md", tmp_path / "p.json")
    assert "**Needs --force**" in body and "tenantctl:force" in body

    refused = ci.run("apply", str(tmp_path / "p.json"))  # the reviewed plan, without the label
    assert refused.code == 1 and "--force" in refused.err, refused.all
    forced = ci.run("apply", str(tmp_path / "p.json"), "--force")  # the label's effect
    assert forced.code == 0, forced.all


def test_within_the_limit_the_plan_says_so(tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    text = ci.run("plan")
    assert "Safety limit (over 30% of a tenant's live resources and more than 3 updates/deletes): within." \
        in text.out, text.all
    assert json.loads(ci.run("plan", "--format", "json").out)["safety"]["needs_force"] is False
