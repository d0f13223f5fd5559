"""ci/gh.py against a local fake of the GitHub REST endpoints it uses (respx), and the merge it drives.

The plan comment is one comment edited in place; the merge fetches the plan reviewed for the merged head
and the CLI applies exactly it (a stale one is refused); one issue per failing tenant, closed on recovery.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from ci import gh
from sandbox.world import World
from tests.cli.ci_repo import make_ci_repo

API = "https://api.github.test"
REPO_NAME = "acme-ops/tenants"


@dataclass
class FakeGitHub:
    """Just enough of GitHub: issue comments, issues, commit → pulls, artifacts and their zips."""

    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    zips: dict[str, bytes] = field(default_factory=dict)
    next_id: int = 100

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def install(self, router: respx.MockRouter) -> None:
        base = f"{API}/repos/{REPO_NAME}"

        def list_comments(request: httpx.Request, pr: str) -> httpx.Response:
            return httpx.Response(200, json=[c for c in self.comments.values() if c["pr"] == int(pr)])

        def add_comment(request: httpx.Request, pr: str) -> httpx.Response:
            cid = self._id()
            self.comments[cid] = {"id": cid, "pr": int(pr), "body": json.loads(request.content)["body"],
                                  "user": {"login": "github-actions[bot]", "type": "Bot"}}
            return httpx.Response(201, json=self.comments[cid])

        def edit_comment(request: httpx.Request, cid: str) -> httpx.Response:
            self.comments[int(cid)]["body"] = json.loads(request.content)["body"]
            return httpx.Response(200, json=self.comments[int(cid)])

        def list_issues(request: httpx.Request) -> httpx.Response:
            label = request.url.params.get("labels")
            return httpx.Response(200, json=[i for i in self.issues.values() if i["state"] == "open"
                                             and label in i["labels"]])

        def add_issue(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            n = self._id()
            self.issues[n] = {"number": n, "state": "open", "title": body["title"], "body": body["body"],
                              "labels": body["labels"]}
            return httpx.Response(201, json=self.issues[n])

        def edit_issue(request: httpx.Request, n: str) -> httpx.Response:
            self.issues[int(n)].update(json.loads(request.content))
            return httpx.Response(200, json=self.issues[int(n)])

        def commit_pulls(request: httpx.Request, sha: str) -> httpx.Response:
            return httpx.Response(200, json=self.pulls_of.get(sha, []))

        def list_artifacts(request: httpx.Request) -> httpx.Response:
            name = request.url.params.get("name")
            found = [a for a in self.artifacts if a["name"] == name]
            return httpx.Response(200, json={"total_count": len(found), "artifacts": found})

        def artifact_zip(request: httpx.Request, aid: str) -> httpx.Response:
            return httpx.Response(200, content=self.zips[aid])

        router.get(url__regex=rf"{base}/issues/(?P<pr>\d+)/comments").mock(side_effect=list_comments)
        router.post(url__regex=rf"{base}/issues/(?P<pr>\d+)/comments").mock(side_effect=add_comment)
        router.patch(url__regex=rf"{base}/issues/comments/(?P<cid>\d+)").mock(side_effect=edit_comment)
        router.get(url__regex=rf"{base}/issues(\?.*)?$").mock(side_effect=list_issues)
        router.post(f"{base}/issues").mock(side_effect=add_issue)
        router.patch(url__regex=rf"{base}/issues/(?P<n>\d+)$").mock(side_effect=edit_issue)
        router.get(url__regex=rf"{base}/commits/(?P<sha>[0-9a-f]+)/pulls").mock(side_effect=commit_pulls)
        router.get(url__regex=rf"{base}/actions/artifacts(\?.*)?$").mock(side_effect=list_artifacts)
        router.get(url__regex=rf"{base}/actions/artifacts/(?P<aid>\d+)/zip").mock(side_effect=artifact_zip)

    def upload_plan(self, head_sha: str, plan: bytes) -> None:
        """What actions/upload-artifact does in the plan job: plan-<head sha> holding plan.json."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("plan.json", plan)
        aid = self._id()
        self.zips[str(aid)] = buf.getvalue()
        self.artifacts.append({"id": aid, "name": f"plan-{head_sha}", "expired": False,
                               "created_at": f"2026-12-01T00:00:{aid % 60:02d}Z",
                               "archive_download_url": f"{API}/repos/{REPO_NAME}/actions/artifacts/{aid}/zip"})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("GITHUB_API_URL", API)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPO_NAME)
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_test_token")
    f = FakeGitHub()
    with respx.mock(assert_all_called=False) as router:
        f.install(router)
        yield f


def test_the_plan_comment_is_created_once_then_edited_in_place(fake: FakeGitHub, tmp_path: Path) -> None:
    md = tmp_path / "plan.md"
    md.write_text("### tenantctl plan\n\n+ nuki.decentral_webhook[acme]\n")
    fake.comments[1] = {"id": 1, "pr": 7, "body": "LGTM", "user": {"login": "alice", "type": "User"}}
    assert gh.main(["plan-comment", "--pr", "7", "--sha", "b" * 40, "--exit-code", "2", "--plan-md", str(md)]) == 0
    assert gh.main(["plan-comment", "--pr", "7", "--sha", "c" * 40, "--exit-code", "0", "--plan-md", str(md)]) == 0
    ours = [c for c in fake.comments.values() if gh.MARKER in c["body"]]
    assert len(ours) == 1 and "**No changes.**" in ours[0]["body"] and "cccccccccccc" in ours[0]["body"]
    assert fake.comments[1]["body"] == "LGTM"  # a person's comment is never touched


def test_a_merge_applies_exactly_the_reviewed_plan(fake: FakeGitHub, tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    reviewed = tmp_path / "pr-plan.json"
    assert ci.run("plan", "--out", str(reviewed)).code == 2
    head, merge = "1" * 40, "2" * 40
    fake.upload_plan(head, reviewed.read_bytes())
    fake.pulls_of[merge] = [{"number": 7, "merged_at": "2026-12-01T00:01:00Z", "head": {"sha": head},
                             "labels": []}]

    fetched = tmp_path / "plan.json"
    assert gh.main(["fetch-plan", "--sha", merge, "--out", str(fetched)]) == 0
    assert fetched.read_bytes() == reviewed.read_bytes()
    applied = ci.run("apply", str(fetched))
    assert applied.code == 0, applied.all
    checksum = json.loads(reviewed.read_text())["checksum"]
    runs_out = json.loads(ci.run("runs", "list", "--format", "json").out)
    assert [(r["kind"], r["status"], r["plan_checksum"]) for r in runs_out][:1] == [("apply", "succeeded", checksum)]


def test_a_stale_reviewed_plan_is_refused_and_nothing_is_written(fake: FakeGitHub, tmp_path: Path) -> None:
    ci = make_ci_repo(tmp_path)
    reviewed = tmp_path / "pr-plan.json"
    assert ci.run("plan", "--out", str(reviewed)).code == 2
    world = World.from_json((tmp_path / "world.json").read_text())  # someone changes a provider by hand
    world.meta.phones["106540352242922"].override_callback_uri = "https://someone-else.example/hook"
    (tmp_path / "world.json").write_text(world.to_json())
    fake.upload_plan("3" * 40, reviewed.read_bytes())
    fake.pulls_of["4" * 40] = [{"number": 8, "merged_at": "2026-12-01T00:01:00Z", "head": {"sha": "3" * 40},
                                "labels": [{"name": "tenantctl:force"}]}]
    fetched = tmp_path / "plan.json"
    assert gh.main(["fetch-plan", "--sha", "4" * 40, "--out", str(fetched)]) == 0
    refused = ci.run("apply", str(fetched))
    assert refused.code == 1 and "stale plan" in refused.err and "acme/whatsapp" in refused.err, refused.all
    assert json.loads((tmp_path / "world.calls.json").read_text())["writes"] == {}

    body = tmp_path / "refusal.md"
    body.write_text(f"The merge was **not applied**:\n```\n{refused.err}```\nRe-plan.")
    assert gh.main(["comment", "--pr", "8", "--body-file", str(body)]) == 0
    assert any("not applied" in c["body"] and c["pr"] == 8 for c in fake.comments.values())


def test_a_merge_without_a_reviewed_plan_applies_nothing(fake: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not merged from a pull request"):
        gh.main(["fetch-plan", "--sha", "5" * 40, "--out", str(tmp_path / "p.json")])
    fake.pulls_of["6" * 40] = [{"number": 9, "merged_at": "x", "head": {"sha": "7" * 40}, "labels": []}]
    with pytest.raises(SystemExit, match="no plan artifact plan-7777"):
        gh.main(["fetch-plan", "--sha", "6" * 40, "--out", str(tmp_path / "p.json")])


def test_one_issue_per_failing_tenant_updated_then_closed(fake: FakeGitHub, tmp_path: Path) -> None:
    health = {"format_version": 1, "rows": [  # as `tenantctl health --format json` writes it
        {"tenant": "acme", "tenant_status": "active", "provider": "nuki", "address": "nuki.token[acme]",
         "health": "degraded", "detail": "401 <b>", "hint": "issue a new API token"},
        {"tenant": "blue-harbor", "tenant_status": "active", "provider": "whatsapp",
         "address": "whatsapp.token[blue-harbor]", "health": "healthy", "detail": "ok", "hint": ""},
        {"tenant": "blue-harbor", "tenant_status": "active", "provider": "smtp",
         "address": "smtp.connect[blue-harbor]", "health": "unknown", "detail": "unreachable", "hint": ""}]}
    drift = {"items": [{"tenant": "blue-harbor", "provider": "whatsapp", "error": None, "changes": [
        {"action": "update", "address": "whatsapp.phone_webhook[blue-harbor/1]"}]}]}
    (tmp_path / "h.json").write_text(json.dumps(health))
    (tmp_path / "d.json").write_text(json.dumps(drift))
    args = ["report", "--health", str(tmp_path / "h.json"), "--drift", str(tmp_path / "d.json"),
            "--junit", str(tmp_path / "j.xml"), "--summary", str(tmp_path / "s.md"), "--run-url", "https://r/1"]
    assert gh.main(args) == 1
    assert sorted(i["title"] for i in fake.issues.values()) == [gh.issue_title("acme"), gh.issue_title("blue-harbor")]
    junit = (tmp_path / "j.xml").read_text()
    assert 'failures="2"' in junit and "&lt;b&gt;" in junit
    assert "2 of 2 tenant(s) failing" in (tmp_path / "s.md").read_text()

    assert gh.main(args) == 1  # still failing: the same issues, updated
    assert len(fake.issues) == 2

    health["rows"][0]["health"] = "healthy"  # acme recovers
    (tmp_path / "h.json").write_text(json.dumps(health))
    assert gh.main(args) == 1
    by_title = {i["title"]: i for i in fake.issues.values()}
    assert by_title[gh.issue_title("acme")]["state"] == "closed"
    assert by_title[gh.issue_title("blue-harbor")]["state"] == "open"

    (tmp_path / "d.json").write_text(json.dumps({"items": []}))
    assert gh.main(args) == 0
    assert all(i["state"] == "closed" for i in fake.issues.values())
