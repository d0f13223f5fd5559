"""The model's secret fields, the SOPS rules and the JSON Schema agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenancy.findings import Severity
from tenancy.model import encrypted_regex, secret_field_names
from tenancy.schema import render
from tenancy.sops_config import check_sops_config, regex_names

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("directory", ["tenants", "examples"])
def test_sops_rules_encrypt_exactly_the_model_secret_fields(directory: str) -> None:
    config = REPO / directory / ".sops.yaml"
    assert encrypted_regex() in config.read_text()
    assert regex_names(encrypted_regex()) == secret_field_names()
    rules = {f.rule for f in check_sops_config(config) if f.severity is Severity.ERROR}
    # The examples are complete; tenants/ waits for the operator's own age recipients.
    assert rules == (set() if directory == "examples" else {"sops-recipients"})


def test_the_checked_in_schema_is_fresh() -> None:
    on_disk = (REPO / "schemas" / "tenant.schema.json").read_text()
    assert on_disk == render(), "schemas/tenant.schema.json is stale: run `make schemas`"


def test_the_schema_marks_secrets_and_admits_sops_metadata() -> None:
    schema = json.loads(render())
    assert "sops" in schema["properties"]
    hosp = schema["$defs"]["Hospitable"]["properties"]
    assert hosp["api_key"]["writeOnly"] is True


EXAMPLE_FILES = sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("."))


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_files_start_with_the_schema_comment(example: Path) -> None:
    assert example.read_text().startswith("# yaml-language-server: $schema=../schemas/tenant.schema.json")
