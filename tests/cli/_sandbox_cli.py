"""A rehearsal through the real CLI: the examples copied into a temp dir, an in-process sandbox seeded with
drift (TENANTCTL_SANDBOX_INPROCESS), and `tenantctl` run in a subprocess as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_KEY, EXAMPLES, REPO, CliResult


@dataclass
class SandboxCli:
    root: Path
    env: dict[str, str]

    @property
    def world_file(self) -> Path:
        return self.root / "world.json"

    def run(self, *args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> CliResult:
        p = subprocess.run([sys.executable, "-m", "tenantctl", "--tenants", str(self.root / "examples"), *args],
                           capture_output=True, text=True, env={**self.env, **(extra_env or {})}, input=input,
                           cwd=self.root, timeout=120, check=False)
        return CliResult(p.returncode, p.stdout, p.stderr)

    def world(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.world_file.read_text())
        return data

    def calls(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.world_file.with_suffix(".calls.json").read_text())
        return data

    def nuki_auths(self, lock: int) -> list[dict[str, Any]]:
        for account in self.world()["nuki"]["accounts"].values():
            found = account["smartlocks"].get(str(lock))
            if found is not None:
                return list(found["auths"].values())
        raise KeyError(lock)


def make_sandbox_cli(tmp_path: Path) -> SandboxCli:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TENANTCTL_") and k not in ("DATABASE_URL", "SOPS_AGE_KEY")}
    env.update({"SOPS_AGE_KEY_FILE": str(DEMO_KEY), "TENANTCTL_STATE_DIR": str(tmp_path / "state"),
                "TENANTCTL_SANDBOX_INPROCESS": str(tmp_path / "world.json"), "TENANTCTL_RETRY_BASE_S": "0.01",
                "COLUMNS": "200", "PYTHONPATH": str(REPO)})
    s = SandboxCli(tmp_path, env)
    seeded = s.run("sandbox", "seed", "--out", str(s.world_file))
    assert seeded.code == 0, seeded.all
    return s
