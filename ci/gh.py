"""The GitHub side of the workflows: the plan comment, the reviewed plan on merge, one issue per failing tenant.

Run by .github/workflows/*.yml from the BASE branch's checkout (never from a pull request's code) as
`python ci/gh.py COMMAND`. Talks to the REST API (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN) with
httpx; tests point GITHUB_API_URL at a local fake (tests/cli/test_ci_github.py).

Commands
- plan-comment: build the pull request's plan comment (exit 0 "no changes", 1 the errors, 2 the plan; the
  checksum; a line when the plan needs --force) and upsert it: the comment carrying MARKER is edited in
  place, else one is created. `--dry-run` prints the body instead.
- fetch-plan: on a merge to main, find the pull request of the merged commit, its reviewed plan artifact
  (`plan-<head sha>`), and write the plan file; print the pull request number, whether it has the force
  label and the reviewed checksum as `key=value` lines (for $GITHUB_OUTPUT). No reviewed plan: exit 1.
- comment: post a plain comment (a refused apply says to re-plan).
- report: from `health --format json` and `plan --format json` (drift), write a JUnit file and a Markdown
  summary, and keep one open issue per failing tenant (created, updated while failing, closed when it
  recovers; label LABEL).

Secrets: none of the inputs holds one (tenantctl's outputs are scrubbed); the token is only sent to the API.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx

MARKER = "<!-- tenantctl-plan -->"
ISSUE_LABEL = "tenantctl-health"
FORCE_LABEL = "tenantctl:force"
COMMENT_LIMIT = 65_000


# -- the REST API --------------------------------------------------------------------------------------
class GitHub:
    def __init__(self, api: str, repo: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        self.repo = repo
        self.http = httpx.Client(base_url=api.rstrip("/"), timeout=30, transport=transport, headers={
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"})

    @classmethod
    def from_env(cls) -> GitHub:
        return cls(os.environ.get("GITHUB_API_URL", "https://api.github.com"), os.environ["GITHUB_REPOSITORY"],
                   os.environ["GITHUB_TOKEN"])

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = self.http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise SystemExit(f"error: GitHub {method} {path}: HTTP {resp.status_code}")
        return resp

    def pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            items = self._call("GET", path, params={**(params or {}), "per_page": "100", "page": str(page)}).json()
            if isinstance(items, dict):  # e.g. {"total_count": .., "artifacts": [...]}
                items = next((v for v in items.values() if isinstance(v, list)), [])
            yield from items
            if len(items) < 100:
                return
            page += 1

    def get(self, path: str, **kw: Any) -> Any:
        return self._call("GET", path, **kw).json()

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._call("POST", path, json=body).json()

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._call("PATCH", path, json=body).json()

    def download(self, url: str) -> bytes:
        return self._call("GET", url, follow_redirects=True).content


# -- the plan comment ----------------------------------------------------------------------------------
def plan_comment_body(exit_code: int, plan_md: str, plan: Mapping[str, Any] | None, head_sha: str,
                      errors: str = "") -> str:
    """The pull request's plan comment for `tenantctl plan` exit code 0, 1 or 2 (anything else: 1)."""
    head = [MARKER, f"### tenantctl plan for `{head_sha[:12]}`", ""]
    checksum = str(plan.get("checksum")) if plan else None
    safety = plan.get("safety") if plan else None
    if exit_code == 0:
        head.append("**No changes.** The tenants this pull request touches already match their files.")
    elif exit_code == 2:
        head.append("**Changes.** Merging applies exactly this plan (the reviewed plan file; a plan whose "
                    "live state or files moved since is refused).")
    else:
        head.append("**The plan failed**: nothing can be applied until it plans cleanly.")
        if errors.strip():
            head += ["", "```", _fence(errors.strip())[-20_000:], "```"]
    if isinstance(safety, Mapping) and safety.get("needs_force"):
        head += ["", f"**Needs --force**: the plan passes the safety limit. Add the `{FORCE_LABEL}` label to "
                     "apply it on merge (a reviewer's act; CI never forces silently)."]
    if checksum:
        head += ["", f"Checksum: `{checksum}`"]
    text = "\n".join(head) + "\n\n"
    if plan_md.strip() and exit_code != 0:
        text += plan_md.strip()[: COMMENT_LIMIT - len(text) - 200] + "\n"
    return text


def _fence(text: str) -> str:
    return text.replace("```", "'''")


def upsert_comment(gh: GitHub, pr: int, body: str) -> str:
    """Edit the comment with MARKER on pull request PR in place, or create it. Returns 'updated'/'created'."""
    for c in gh.pages(f"/repos/{gh.repo}/issues/{pr}/comments"):
        if MARKER in str(c.get("body", "")) and (c.get("user") or {}).get("type") == "Bot":
            gh.patch(f"/repos/{gh.repo}/issues/comments/{c['id']}", {"body": body})
            return "updated"
    gh.post(f"/repos/{gh.repo}/issues/{pr}/comments", {"body": body})
    return "created"


# -- the reviewed plan on merge ------------------------------------------------------------------------
@dataclass(frozen=True)
class Reviewed:
    pr: int
    head_sha: str
    force: bool
    checksum: str


def fetch_plan(gh: GitHub, sha: str, out: Path) -> Reviewed:
    """The plan reviewed on the pull request that merged SHA, written to OUT. SystemExit when none."""
    pulls = [p for p in gh.get(f"/repos/{gh.repo}/commits/{sha}/pulls") if p.get("merged_at")]
    if not pulls:
        raise SystemExit(f"error: {sha[:12]} was not merged from a pull request: nothing reviewed to apply")
    pr = pulls[0]
    head = str(pr["head"]["sha"])
    name = f"plan-{head}"
    arts = [a for a in gh.pages(f"/repos/{gh.repo}/actions/artifacts", {"name": name}) if not a.get("expired")]
    if not arts:
        raise SystemExit(f"error: no plan artifact {name}: the pull request's last push was not planned; "
                         "re-run its plan")
    newest = max(arts, key=lambda a: str(a.get("created_at", "")))
    with zipfile.ZipFile(io.BytesIO(gh.download(str(newest["archive_download_url"])))) as z:
        plan_bytes = z.read("plan.json")
    doc = json.loads(plan_bytes)
    out.write_bytes(plan_bytes)
    labels = {str(lb.get("name")) for lb in pr.get("labels") or []}
    return Reviewed(int(pr["number"]), head, FORCE_LABEL in labels, str(doc.get("checksum", "")))


# -- health and drift: JUnit, summary, issues ----------------------------------------------------------
@dataclass
class TenantReport:
    failures: list[str] = field(default_factory=list)


def tenant_failures(health: Mapping[str, Any] | None, drift: Mapping[str, Any] | None,
                    drift_error: str = "") -> dict[str, TenantReport]:
    """slug → what fails: failed health checks, drift (changes the files do not account for), plan errors."""
    out: dict[str, TenantReport] = {}
    # `health --format json` (docs/health.md): a row fails when an active tenant's resource is degraded
    # or missing, exactly what makes `health` exit 1; unknown/progressing/suspended are reported, not failed.
    for row in (health or {}).get("rows", []):
        out.setdefault(row["tenant"], TenantReport())
        if row.get("health") in ("degraded", "missing") and row.get("tenant_status") == "active":
            out[row["tenant"]].failures.append(
                f"health {row['address']}: {row['health']}: {row.get('detail', '')}"
                + (f" (what to do: {row['hint']})" if row.get("hint") else ""))
    for item in (drift or {}).get("items", []):
        rep = out.setdefault(item["tenant"], TenantReport())
        if item.get("error"):
            rep.failures.append(f"drift {item['provider']}: could not observe: {item['error']}")
        for c in item.get("changes", []):
            if c.get("action") in ("create", "update", "delete"):
                rep.failures.append(f"drift {c.get('action')} {c.get('address')}")
    if drift_error:
        out.setdefault("(all)", TenantReport()).failures.append(f"drift plan failed: {drift_error}")
    return out


def junit(reports: Mapping[str, TenantReport]) -> str:
    cases = []
    for slug, rep in sorted(reports.items()):
        inner = "".join(f"<failure message={quoteattr(f[:200])}>{escape(f)}</failure>" for f in rep.failures)
        cases.append(f'  <testcase classname="tenantctl" name={quoteattr(slug)}>{inner}</testcase>')
    failed = sum(1 for r in reports.values() if r.failures)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="tenantctl-health-drift" '
            f'tests="{len(reports)}" failures="{failed}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def summary(reports: Mapping[str, TenantReport]) -> str:
    failed = {s: r for s, r in sorted(reports.items()) if r.failures}
    lines = [f"### tenantctl health and drift: {len(failed)} of {len(reports)} tenant(s) failing", ""]
    if failed:
        lines += ["| tenant | failures |", "| --- | --- |"]
        lines += [f"| `{s}` | {'<br>'.join(_cell(f) for f in r.failures[:10])} |" for s, r in failed.items()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def issue_title(slug: str) -> str:
    return f"tenantctl: {slug} is failing health or drift checks"


def sync_issues(gh: GitHub, reports: Mapping[str, TenantReport], run_url: str) -> dict[str, str]:
    """One open issue per failing tenant: created, updated while failing, closed once it recovers."""
    open_issues = {str(i["title"]): i for i in gh.pages(f"/repos/{gh.repo}/issues",
                                                         {"state": "open", "labels": ISSUE_LABEL})
                   if "pull_request" not in i}
    done: dict[str, str] = {}
    for slug, rep in sorted(reports.items()):
        title = issue_title(slug)
        issue = open_issues.get(title)
        if rep.failures:
            body = (f"The scheduled check found {len(rep.failures)} problem(s) for `{slug}` "
                    f"([run]({run_url})):\n\n" + "\n".join(f"- {_cell(f)}" for f in rep.failures[:50]))
            if issue is None:
                gh.post(f"/repos/{gh.repo}/issues", {"title": title, "body": body, "labels": [ISSUE_LABEL]})
                done[slug] = "opened"
            else:
                gh.patch(f"/repos/{gh.repo}/issues/{issue['number']}", {"body": body})
                done[slug] = "updated"
        elif issue is not None:
            gh.post(f"/repos/{gh.repo}/issues/{issue['number']}/comments",
                    {"body": f"Recovered: every check passes again ([run]({run_url}))."})
            gh.patch(f"/repos/{gh.repo}/issues/{issue['number']}", {"state": "closed"})
            done[slug] = "closed"
    return done


# -- command line --------------------------------------------------------------------------------------
def _read_json(path: str | None) -> Any:
    if not path or not Path(path).is_file() or not Path(path).read_text().strip():
        return None
    try:
        return json.loads(Path(path).read_text())
    except ValueError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ci/gh.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("plan-comment")
    pc.add_argument("--exit-code", type=int, required=True)
    pc.add_argument("--plan-md", required=True)
    pc.add_argument("--plan-json")
    pc.add_argument("--errors")
    pc.add_argument("--sha", required=True)
    pc.add_argument("--pr", type=int)
    pc.add_argument("--dry-run", action="store_true")
    fp = sub.add_parser("fetch-plan")
    fp.add_argument("--sha", required=True)
    fp.add_argument("--out", required=True)
    cm = sub.add_parser("comment")
    cm.add_argument("--pr", type=int, required=True)
    cm.add_argument("--body-file", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--health")
    rp.add_argument("--drift")
    rp.add_argument("--drift-errors")
    rp.add_argument("--junit", required=True)
    rp.add_argument("--summary", required=True)
    rp.add_argument("--run-url", default="")
    rp.add_argument("--no-issues", action="store_true")
    a = ap.parse_args(argv)

    if a.cmd == "plan-comment":
        md = Path(a.plan_md).read_text() if Path(a.plan_md).is_file() else ""
        errors = Path(a.errors).read_text() if a.errors and Path(a.errors).is_file() else ""
        body = plan_comment_body(a.exit_code, md, _read_json(a.plan_json), a.sha, errors)
        if a.dry_run:
            sys.stdout.write(body)
            return 0
        print(upsert_comment(GitHub.from_env(), a.pr, body))
    elif a.cmd == "fetch-plan":
        r = fetch_plan(GitHub.from_env(), a.sha, Path(a.out))
        print(f"pr={r.pr}\nhead_sha={r.head_sha}\nforce={'true' if r.force else 'false'}\nchecksum={r.checksum}")
    elif a.cmd == "comment":
        gh = GitHub.from_env()
        gh.post(f"/repos/{gh.repo}/issues/{a.pr}/comments", {"body": Path(a.body_file).read_text()[:COMMENT_LIMIT]})
    else:
        drift_err = Path(a.drift_errors).read_text().strip()[:500] if a.drift_errors and Path(
            a.drift_errors).is_file() else ""
        drift = _read_json(a.drift)
        reports = tenant_failures(_read_json(a.health), drift, "" if drift else drift_err)
        Path(a.junit).write_text(junit(reports))
        Path(a.summary).write_text(summary(reports))
        if not a.no_issues:
            for slug, what in sync_issues(GitHub.from_env(), reports, a.run_url).items():
                print(f"{slug}: issue {what}")
        return 1 if any(r.failures for r in reports.values()) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
