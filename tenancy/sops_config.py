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
DEMO_KEY_FILE = "demo.agekey"
AGE_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")  # bech32
_PROBE = "example-tenant.yaml"  # any valid tenant file name must match a rule


def regex_names(rx: str) -> frozenset[str] | None:
    """The names an `^(a|b|c)$` regex lists, or None when it has another shape."""
    m = re.fullmatch(r"\^\(([A-Za-z0-9_|]+)\)\$", rx)
    return frozenset(m.group(1).split("|")) if m else None


def check_sops_config(config: Path) -> Iterator[Finding]:
    """Findings about CONFIG. The public demo key is tolerated (as a warning) only in a directory that
    publishes its private half beside it (`demo.agekey`): such a directory declares itself a demo."""
    name = str(config)
    demo_allowed = (config.parent / DEMO_KEY_FILE).is_file()
    if not config.is_file():
        yield Finding(name, 1, 1, "", "missing .sops.yaml beside the tenant files",
                      "create it with a creation rule for [a-z0-9-]+\\.yaml, your team's age recipients and "
                      f"encrypted_regex: {encrypted_regex()}", rule="sops-config")
        return
    try:
        doc = parse(config.read_text(encoding="utf-8"), aliases=True)  # anchored recipients are common here
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
        yield from _check_rule(name, doc, i, rule, demo_allowed)
        return
    yield Finding(name, 1, 1, "creation_rules", f"no creation rule covers tenant files such as {_PROBE}",
                  "set path_regex to match <slug>.yaml (or omit it)", rule="sops-config")


def _check_rule(name: str, doc: Any, i: int, rule: dict[str, Any], demo_allowed: bool) -> Iterator[Finding]:
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
    yield from _check_recipients(name, doc, i, rule, demo_allowed)
    if rule.get("mac_only_encrypted") is not True:
        p = doc.position(base)
        yield Finding(name, p.line, p.column, f"creation_rules[{i}]",
                      "the MAC covers plain fields too: any hand edit of a reviewed plain field breaks the file",
                      "add `mac_only_encrypted: true` (then `sops updatekeys` or re-encrypt the files)",
                      rule="sops-mac-scope", severity=Severity.WARNING)


def _recipients(rule: dict[str, Any]) -> list[str]:
    age = rule.get("age")
    items = age if isinstance(age, list) else str(age or "").replace("\n", ",").split(",")
    return [str(a).strip() for a in items if str(a).strip()]


def _check_recipients(name: str, doc: Any, i: int, rule: dict[str, Any], demo_allowed: bool) -> Iterator[Finding]:
    field = f"creation_rules[{i}].age"
    p = doc.position(("creation_rules", i, "age"))
    recipients = _recipients(rule)
    if rule.get("key_groups") and not recipients:
        return  # key groups (several key types) are the binary's business
    bad = [r for r in recipients if not AGE_RECIPIENT.fullmatch(r)]
    if not recipients or bad:
        yield Finding(name, p.line, p.column, field,
                      "no valid age recipient" + (f" ({len(bad)} not of the form age1…)" if bad else ""),
                      "list your team's age public keys, comma-separated (`tenantctl keygen --out FILE` makes "
                      "one and prints it)",
                      rule="sops-recipients")
    if DEMO_RECIPIENT in recipients:
        if demo_allowed:
            yield Finding(name, p.line, p.column, field,
                          "encrypts to the PUBLIC demo key (its private half is in this directory): demo only",
                          "real tenants belong in a directory whose .sops.yaml lists your team's keys",
                          rule="sops-demo-key", severity=Severity.WARNING)
        else:
            yield Finding(name, p.line, p.column, field,
                          "encrypts to the PUBLIC demo key: anyone with this repository could read these secrets",
                          "replace it with your team's age recipients, `sops updatekeys` each file and rotate "
                          "every secret that was encrypted to it", rule="sops-demo-key")
