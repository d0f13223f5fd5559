"""The project stands alone: no tracked file (code, tests, Makefile, CI, workflows) reads outside the repository.

Scans `git ls-files` (not Markdown, which is prose; not `specs/`, vendored third-party data; not
`.env.example`, a template of an operator's deployment settings, which never ships as `.env`) for the ways
a file can
reach beyond the checkout: the workspace's shared folder, an absolute path of a machine, a
`Path(__file__).parents[N]` that climbs above the repository root, or a `../` that leaves it. Each rule is
proven to fire on a bad sample first, so the scan cannot pass by matching nothing.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent
THIS = PurePosixPath(Path(__file__).resolve().relative_to(REPO).as_posix())  # its samples are bad on purpose
# Deployment templates name the paths of the host they install onto (/opt/tenantctl, /etc/tenantctl), never
# read here; the deploy test substitutes those paths with the checkout's own.
NOT_READ = {THIS, PurePosixPath(".env.example"), PurePosixPath("deploy/Dockerfile"),
            PurePosixPath("deploy/systemd/tenantctl-serve.service"),
            PurePosixPath("deploy/systemd/tenantctl-deliver.service"), PurePosixPath("tests/delivery/test_deploy.py")}

_SHARED = re.compile(r"\.\./shared\b|\bshared/reference\b")
# An absolute path into a machine's own folders; not a URL's path (preceded by a host, `:` or `/`).
_ABSOLUTE = re.compile(r"(?<![\w.:/-])/(?:work|home|root|Users|mnt|srv|opt|etc|var|tmp)/")
# The kernel's pseudo-files (/proc, /dev, /sys) are on every Linux machine, not this one's: tests name
# them as attack targets (a tenant file linked to /proc/self/environ must be refused).
_ABSOLUTE_PATH_LITERAL = re.compile(r"""\b(?:Path|open)\(\s*[rbf]?["']/(?!(?:proc|dev|sys)\b)""")
_PARENTS_INDEX = re.compile(r"\.parents\[(\d+)\]")
_PARENT_CHAIN = re.compile(r"__file__\)?(?:\.resolve\(\))?((?:\.parent\b)+)")
_DOTDOT = re.compile(r"(?<![\w.])((?:\.\./)+)")


def _depth(path: PurePosixPath) -> int:
    """Folders between the repository root and the file (0 for a file at the root)."""
    return len(path.parts) - 1


def _shared(path: PurePosixPath, line: str) -> bool:
    return bool(_SHARED.search(line))


def _absolute(path: PurePosixPath, line: str) -> bool:
    return bool(_ABSOLUTE.search(line) or _ABSOLUTE_PATH_LITERAL.search(line))


def _climbs_above_root(path: PurePosixPath, line: str) -> bool:
    # Path(__file__).resolve().parents[0] is the file's folder; parents[depth] is the repository root.
    if "__file__" in line and any(int(n) > _depth(path) for n in _PARENTS_INDEX.findall(line)):
        return True
    chain = _PARENT_CHAIN.search(line)
    return chain is not None and chain.group(1).count(".parent") > _depth(path) + 1


def _dotdot_leaves(path: PurePosixPath, line: str) -> bool:
    # Resolved against the file's own folder (how `$schema=../schemas/...` comments are read).
    return any(m.count("../") > _depth(path) for m in _DOTDOT.findall(line))


RULES: dict[str, Callable[[PurePosixPath, str], bool]] = {
    "names the workspace's shared folder": _shared,
    "an absolute path of a machine": _absolute,
    "Path(__file__) climbs above the repository root": _climbs_above_root,
    "a ../ path that leaves the repository": _dotdot_leaves,
}


def findings(path: PurePosixPath, text: str) -> Iterator[str]:
    for number, line in enumerate(text.splitlines(), start=1):
        for rule, hits in RULES.items():
            if hits(path, line):
                yield f"{path}:{number}: {rule}: {line.strip()[:120]}"


BAD = [
    ("sandbox/spec_check.py", 'DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "reference"'),
    ("sandbox/spec_check.py", 'SPECS = "../shared/reference"'),
    ("tests/webhook_server/test_x.py", 'SPEC = Path("/work/shared/reference/meta.yaml")'),
    ("tests/webhook_server/test_x.py", 'SPEC = Path(__file__).resolve().parents[3] / "reference"'),
    ("tenantctl/demo.py", "REPO = Path(__file__).resolve().parent.parent.parent"),
    ("Makefile", "\tcp /home/dev/specs/*.json specs/"),
    (".ci/run", 'cd "$(dirname "$0")/../../shared"'),
    ("tests/a.py", "data = open('/opt/data/x.json').read()"),
    ("examples/acme.yaml", "# yaml-language-server: $schema=../../schemas/tenant.schema.json"),
]
GOOD = [
    ("sandbox/spec_check.py", 'DEFAULT_SPECS_DIR = pathlib.Path(__file__).resolve().parents[1] / "specs"'),
    ("tests/sandbox/test_served.py", "ROOT = pathlib.Path(__file__).resolve().parents[2]"),
    ("tenantctl/demo.py", "REPO = Path(__file__).resolve().parent.parent"),
    ("examples/acme.yaml", "# yaml-language-server: $schema=../schemas/tenant.schema.json"),
    ("reconciler/providers/whatsapp.py", "# https://developers.facebook.com/docs/graph-api/webhooks/"),
    (".ci/run", "#!/usr/bin/env bash"),
    (".ci/run", 'pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null'),
    ("tests/cli/test_validate.py", 'link.symlink_to(Path("/proc/self/environ"))'),
]


@pytest.mark.parametrize(("path", "line"), BAD)
def test_each_rule_catches_a_read_outside_the_repository(path: str, line: str) -> None:
    assert list(findings(PurePosixPath(path), line)), line


@pytest.mark.parametrize(("path", "line"), GOOD)
def test_paths_inside_the_repository_and_urls_pass(path: str, line: str) -> None:
    assert list(findings(PurePosixPath(path), line)) == []


def _tracked() -> list[PurePosixPath]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=False)
    if out.returncode != 0:
        pytest.fail(f"git ls-files failed in {REPO}: the check needs a git checkout "
                    f"({out.stderr.decode(errors='replace').strip()})")
    return [PurePosixPath(p) for p in out.stdout.decode().split("\0") if p]


def test_no_tracked_file_reads_outside_the_repository() -> None:
    files = [p for p in _tracked()
             if p.suffix != ".md" and p.parts[0] != "specs" and p not in NOT_READ and (REPO / p).is_file()]
    assert any(p.suffix == ".py" for p in files) and PurePosixPath("Makefile") in files
    found = []
    for path in files:
        try:
            text = (REPO / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: nothing it could read
        found.extend(findings(path, text))
    assert found == [], "files that read outside the repository:\n" + "\n".join(found)
