"""Fixtures for the access tests: a writable copy of the example tenants with their demo key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def examples_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "tenants"
    shutil.copytree(EXAMPLES, d)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(d / "demo.agekey"))
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    return d
