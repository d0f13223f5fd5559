"""Which tenants a change touched, from git: `tenantctl plan --changed-since REV`.

The diff runs from the merge base of REV and HEAD to the working tree (plus untracked files), so a pull
request's plan covers what the pull request changed, not what moved on the base branch since it forked.
A change to anything every tenant depends on (the `.sops.yaml` beside the tenant files, the tool's code
and packaging, the CI workflows) means every tenant: None.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

# Repository paths whose change can alter every tenant's plan.
GLOBAL_PREFIXES = ("tenantctl/", "reconciler/", "tenancy/", "store/", "sandbox/", ".github/workflows/",
                   "ci/", "schemas/")
GLOBAL_FILES = ("pyproject.toml", "Makefile")


class ChangedSinceError(Exception):
    """git could not answer (not a repository, unknown revision); the message says which."""


def _git(cwd: Path, *args: str) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ChangedSinceError(f"git failed: {type(e).__name__}") from None
    if p.returncode != 0:
        first = (p.stderr.strip().splitlines() or ["unknown error"])[0][:200]
        raise ChangedSinceError(f"git {args[0]} failed in {cwd}: {first}")
    return p.stdout


def changed_paths(tenants_dir: Path, since: str) -> tuple[Path, list[str]]:
    """(repository root, paths relative to it changed since the merge base of SINCE and HEAD)."""
    cwd = tenants_dir if tenants_dir.is_dir() else Path.cwd()
    root = Path(_git(cwd, "rev-parse", "--show-toplevel").strip())
    base = _git(root, "merge-base", since, "HEAD").strip()
    diffed = _git(root, "diff", "--name-only", "--no-renames", base, "--").splitlines()
    untracked = _git(root, "ls-files", "--others", "--exclude-standard").splitlines()
    return root, sorted({p for p in [*diffed, *untracked] if p})


def classify(paths: list[str], tenants_rel: str) -> set[str] | None:
    """Tenant slugs whose files are among PATHS (repository-relative, '/'), or None for every tenant."""
    prefix = tenants_rel.rstrip("/") + "/" if tenants_rel not in ("", ".") else ""
    slugs: set[str] = set()
    for p in paths:
        if p in GLOBAL_FILES or p.startswith(GLOBAL_PREFIXES) or p == f"{prefix}.sops.yaml":
            return None
        pp = PurePosixPath(p)
        if p.startswith(prefix) and str(pp.parent) + "/" == (prefix or "./") and pp.suffix == ".yaml":
            slugs.add(pp.stem)
    return slugs


def changed_tenants(tenants_dir: Path, since: str) -> set[str] | None:
    """Slugs whose tenant file changed since SINCE; None when a change concerns every tenant."""
    root, paths = changed_paths(tenants_dir, since)
    rel = tenants_dir.resolve().relative_to(root.resolve()).as_posix() if tenants_dir.resolve().is_relative_to(
        root.resolve()) else ""
    return classify(paths, rel)
