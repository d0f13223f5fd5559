"""A tenant repository made for real in a test: git history, the demo key, a seeded in-process sandbox."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import DEMO_KEY, EXAMPLES, CliResult


def git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return p.stdout


@dataclass
class CiRepo:
    """tmp/repo (a git repository with tenants/), tmp/state (the database), tmp/world.json (the sandbox)."""

    root: Path
    repo: Path

    @property
    def tenants(self) -> Path:
        return self.repo / "tenants"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'state' / 'tenantctl.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a CI job: only what the job sets, nothing of the developer's."""
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith(("TENANTCTL_", "SOPS_")) or k in ("DATABASE_URL", "GITHUB_TOKEN"))}
        env.update({"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_STATE_DIR": str(self.root / "state"),
                    "TENANTCTL_SANDBOX_INPROCESS": str(self.root / "world.json"),
                    "TENANTCTL_RETRY_BASE_S": "0.01", "TENANTCTL_SANDBOX": "1", "NO_COLOR": "1",
                    "COLUMNS": "200"})
        env.update(extra)
        return env

    def run(self, *args: str, input: str | None = None, cwd: Path | None = None, **extra: str) -> CliResult:
        """`tenantctl ARGS` in a subprocess, from the repository (or CWD), as the CI job runs it."""
        p = subprocess.run([sys.executable, "-m", "tenantctl", *args], capture_output=True, text=True,
                           env=self.env(**extra), input=input, cwd=cwd or self.repo, timeout=120, check=False)
        return CliResult(p.returncode, p.stdout, p.stderr)

    def commit(self, message: str) -> str:
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", message)
        return git(self.repo, "rev-parse", "HEAD").strip()

    def discard_working_tree(self) -> None:
        """What a CI runner does at the end of a job: nothing uncommitted survives."""
        git(self.repo, "checkout", "-q", "--", ".")
        git(self.repo, "clean", "-q", "-fdx")


def make_ci_repo(root: Path) -> CiRepo:
    repo = root / "repo"
    repo.mkdir()
    shutil.copytree(EXAMPLES, repo / "tenants")
    git(repo, "init", "-q", "-b", "main")
    r = CiRepo(root, repo)
    r.commit("tenants")
    seeded = r.run("sandbox", "seed", "--out", str(root / "world.json"))
    assert seeded.code == 0, seeded.all
    return r
