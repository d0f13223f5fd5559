"""Check `.sops.yaml` beside the tenant files: a rule covers `<slug>.yaml` and encrypts exactly our secrets.

If `encrypted_regex` missed a secret field, `sops encrypt` would leave it in plaintext; if it named a
plain field, reviews would stop seeing real diffs. So the regex must name exactly the model's secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tenancy.findings import Finding, Severity
from tenancy.model import encrypted_regex, secret_field_names
from tenancy.yaml_source import YamlError, parse

SOPS_CONFIG_NAME = ".sops.yaml"
# The public key of examples/demo.agekey: anything encrypted to it is readable by anyone.
DEMO_RECIPIENT = "age1n7v3dn50dp0dr5xlafw6l2w6tkv6pjkjq44jsw3kxja7vm0yxqvq3da78v"
_PROBE = "example-tenant.yaml"  # any valid tenant file name must match a rule


def regex_names(rx: str) -> frozenset[str] | None:
    """The names an `^(a|b|c)$` regex lists, or None when it has another shape."""
    m = re.fullmatch(r"\^\(([A-Za-z0-9_|]+)\)\$", rx)
    return frozenset(m.group(1).split("|")) if m else None


def check_sops_config(config: Path) -> Iterator[Finding]:
    name = str(config)
    if not config.is_file():
        yield Finding(name, 1, 1, "", "missing .sops.yaml beside the tenant files",
                      "create it with a creation rule for [a-z0-9-]+\\.yaml, your team's age recipients and "
                      f"encrypted_regex: {encrypted_regex()}", rule="sops-config")
        return
    try:
        doc = parse(config.read_text(encoding="utf-8"))
    except YamlError as e:
        pos = e.position
        yield Finding(name, pos.line if pos else 1, pos.column if pos else 1, "", e.message, rule="sops-config")
        return
    rules = (doc.data or {}).get("creation_rules") if isinstance(doc.data, dict) else None
    if not isinstance(rules, list) or not rules:
        yield Finding(name, 1, 1, "creation_rules", "no creation_rules", "add a rule for tenant files",
                      rule="sops-config")
        return
    for i, rule in enumerate(rules):
        rx = rule.get("path_regex") if isinstance(rule, dict) else None
        try:
            if rx is not None and not re.search(str(rx), _PROBE):
                continue
        except re.error:
            pos = doc.position(("creation_rules", i, "path_regex"))
            yield Finding(name, pos.line, pos.column, f"creation_rules[{i}].path_regex", "invalid regular expression",
                          rule="sops-config")
            return
        yield from _check_rule(name, doc, i, rule)
        return
    yield Finding(name, 1, 1, "creation_rules", f"no creation rule covers tenant files such as {_PROBE}",
                  "set path_regex to match <slug>.yaml (or omit it)", rule="sops-config")


def _check_rule(name: str, doc: Any, i: int, rule: dict[str, Any]) -> Iterator[Finding]:
    base = ("creation_rules", i)
    want = secret_field_names()
    got_rx = rule.get("encrypted_regex")
    pos = doc.position((*base, "encrypted_regex"))
    got = regex_names(str(got_rx)) if got_rx is not None else None
    if got is None:
        yield Finding(name, pos.line, pos.column, f"creation_rules[{i}].encrypted_regex",
                      "encrypted_regex must list exactly the secret fields", f"set it to {encrypted_regex()}",
                      rule="sops-config")
    elif got != want:
        missing, extra = sorted(want - got), sorted(got - want)
        parts = ([f"missing {', '.join(missing)} (they would be committed in plaintext)"] if missing else []) + (
            [f"names non-secret {', '.join(extra)}"] if extra else [])
        yield Finding(name, pos.line, pos.column, f"creation_rules[{i}].encrypted_regex", "; ".join(parts),
                      f"set it to {encrypted_regex()}", rule="sops-config")
    if DEMO_RECIPIENT in str(rule.get("age", "")):
        p = doc.position((*base, "age"))
        yield Finding(name, p.line, p.column, f"creation_rules[{i}].age",
                      "encrypts to the PUBLIC demo key (examples/demo.agekey): fine for the demo, never for real "
                      "tenants", "replace it with your team's age recipients, then `sops updatekeys` each file",
                      rule="sops-demo-key", severity=Severity.WARNING)
    if not rule.get("age") and not rule.get("key_groups"):
        p = doc.position(base)
        yield Finding(name, p.line, p.column, f"creation_rules[{i}]", "no age recipients",
                      "list your team's age public keys under `age:`", rule="sops-config")
