"""What a plain `pip install .` brings is enough to run every command: the image (deploy/Dockerfile) and the
systemd recipe (docs/deploy.md) install no dev extra, while the test venv has pytest and its company, which
hide a missing runtime dependency (gunicorn's gevent worker imports `packaging`, which gunicorn asks for only
under its `gevent` extra: `tenantctl serve` failed on a plain install while every test passed)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tenantctl", "tenancy", "store", "reconciler", "webhook_server", "sandbox", "ci", "delivery", "outbound")
# The check of the sandbox against the vendored specs (openapi-core, jsonschema): run by the tests, with the dev
# extra, never by a command. Importing everything else proves no command reaches it.
TESTS_ONLY = ("sandbox.spec_check", "sandbox.spec_schema", "sandbox.spec_allowances")

# Run in a fresh interpreter: every module of the project is imported while a finder refuses any third-party
# top-level module that no distribution of the runtime closure provides. A library's own optional import
# (try/except ImportError) then behaves as on a plain install.
_PROBE = """
import importlib, importlib.abc, importlib.metadata, json, pkgutil, sys
allowed, packages, tests_only = (json.loads(a) for a in sys.argv[1:4])
provides = importlib.metadata.packages_distributions()

class RuntimeOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if path is None and top not in sys.stdlib_module_names and top not in packages and top in provides:
            if not {d.lower().replace("_", "-") for d in provides[top]} & set(allowed):
                raise ImportError(f"{top} is not installed by a plain `pip install .`")
        return None

sys.meta_path.insert(0, RuntimeOnly())
import gevent.monkey  # as the server's workers run: gunicorn's gevent worker class loads under it
import gunicorn.workers.ggevent
import webhook_server.worker
for package in packages:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        # Not __main__ (it runs the command), nor Alembic's scripts (they run inside a migration).
        if not info.name.endswith(".__main__") and ".migrations" not in info.name and info.name not in tests_only:
            importlib.import_module(info.name)
print("imported")
"""


def _name(dist: str) -> str:
    return dist.lower().replace("_", "-")


def runtime_closure(project: str = "tenantctl") -> set[str]:
    """The distributions a plain install of PROJECT brings: its requirements without extras of its own, and
    theirs with the extras they are asked for, markers evaluated for this interpreter."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(project, frozenset())]
    while todo:
        dist, extras = todo.pop()
        key = _name(dist)
        if f"{key}{sorted(extras)}" in seen:
            continue
        seen.add(f"{key}{sorted(extras)}")
        seen.add(key)
        for raw in metadata.requires(dist) or []:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((req.name, frozenset(req.extras)))
    return {s for s in seen if "[" not in s}


def test_every_module_imports_with_only_what_a_plain_install_brings() -> None:
    allowed = runtime_closure()
    assert "pytest" not in allowed and "gunicorn" in allowed  # the closure is the runtime's, not the venv's
    probe = subprocess.run([sys.executable, "-c", _PROBE, *map(json.dumps, (sorted(allowed), PACKAGES, TESTS_ONLY))],
                           cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.strip().endswith("imported")


def _imported_tops(source: Path) -> set[str]:
    """The top-level modules a file imports anywhere in it, a function's lazy imports included."""
    tops = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.partition(".")[0])
    return tops


def test_no_import_anywhere_in_the_code_needs_more_than_a_plain_install() -> None:
    """Imports the probe above cannot run, written inside functions (an error path's, say), read from the source."""
    allowed = runtime_closure()
    provides = metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for package in PACKAGES:
        for source in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(source.relative_to(ROOT).with_suffix("").parts)
            if module in TESTS_ONLY:
                continue
            for top in _imported_tops(source) - set(sys.stdlib_module_names) - set(PACKAGES):
                if not {_name(d) for d in provides.get(top, [top])} & allowed:
                    missing.setdefault(top, []).append(module)
    assert missing == {}
