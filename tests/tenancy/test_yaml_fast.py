"""parse_fast (the loader's reader) gives what parse gives: the same value, the same error at the same place,
the same positions (found only when first asked for), for every YAML text, not only tenant files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tenancy.yaml_source import MAX_NODES, Document, YamlError, parse, parse_fast
from tests.cli.test_validate import ALIAS_BOMB, ALIASES, BASE

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

TEXTS = {
    "tenant": BASE,
    "empty stream": "",
    "only a comment": "# nothing\n",
    "explicit empty document": "---\n",
    "a root scalar": "just text\n",
    "a root list": "- 1\n- two\n",
    "a null root": "~\n",
    "core schema scalars": "a: yes\nb: on\nc: 2024-01-01\nd: 0o17\ne: 0x1F\nf: 017\ng: +5\nh: -0\ni: 1e5\n"
                           "j: .5\nk: -.inf\nl: .NaN\nm: True\nn: NULL\no:\np: ''\nq: \"1\"\nr: '~'\n",
    "block and folded": "a: |\n  one\n  two\nb: >\n  three\n  four\nc: |-\n  5\n",
    "flow collections": "a: {b: [1, {c: d}], e: []}\nf: {}\n",
    "quoted keys": "'1': one\n\"true\": two\n3: three\nnull: four\n",
    "an empty key": "'': value\n",
    "a key libyaml refuses": ": value\n",
    "nested lists": "a:\n  - - 1\n    - [2, 3]\n  - []\n",
    "unicode": "name: Žilina ☃\n'ключ': значение\n",
    # Left to parse: each refused or typed there, located.
    "anchor and alias": ALIASES,
    "an alias bomb": ALIAS_BOMB,
    "an undefined alias": "a: *nowhere\n",
    "an explicit tag": "a: !!str 5\n",
    "a non-specific tag": "a: ! 5\n",
    "an unknown tag": "a: !secret x\n",
    "a tagged mapping": "a: !!map {b: c}\n",
    "a merge key": "base: {a: 1}\nchild:\n  <<: {a: 2}\n",
    "a duplicate key": "a: 1\nb: 2\na: 3\n",
    "a duplicate key in a list item": "items:\n  - k: 1\n    k: 2\n",
    "a mapping as a key": "? {a: 1}\n: x\n",
    "a list as a key": "? [a]\n: x\n",
    "two documents": "a: 1\n---\nb: 2\n",
    "a syntax error": "a: [1, 2\n",
    "a syntax error after the document": "a: 1\n]\n",
    "a tab indent": "a:\n\tb: 1\n",
    "an integer Python refuses": "a: " + "9" * 5000 + "\n",
    "too many values": "[" + "1," * MAX_NODES + "1]\n",
    "exactly the budget": "[" + "1," * (MAX_NODES - 2) + "1]\n",
}


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and types compared too (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(parser: Any, text: str) -> tuple[str, Any]:
    try:
        doc = parser(text)
    except YamlError as e:
        return "error", (e.message, e.position, e.path, e.hint)
    except ValueError as e:
        return "ValueError", type(e).__name__
    return "data", doc.data


CASES = [*TEXTS.items(), *((p.name, p.read_text()) for p in EXAMPLES)]


@pytest.mark.parametrize(("case", "text"), CASES, ids=[c for c, _ in CASES])
def test_parse_fast_agrees_with_parse(case: str, text: str) -> None:
    fast, full = _outcome(parse_fast, text), _outcome(parse, text)
    assert fast[0] == full[0], case
    assert _same(fast[1], full[1]) if fast[0] == "data" else fast == full, case


@pytest.mark.parametrize(("case", "text"), CASES, ids=[c for c, _ in CASES])
def test_positions_found_later_are_those_parse_records(case: str, text: str) -> None:
    try:
        full = parse(text)
    except (YamlError, ValueError):
        return
    fast = parse_fast(text)
    assert fast.values == full.values and fast.keys == full.keys, case
    assert Document.deferred(text).values == full.values


def test_a_tenant_files_positions_wait_until_asked_for() -> None:
    doc = parse_fast(BASE)
    assert doc._values is None  # nothing located yet: a valid file never pays for positions
    assert doc.position(("status",)) == (3, 1)
    assert doc.position(("properties", 0, "nuki_lock_ids", 0)) == parse(BASE).position(
        ("properties", 0, "nuki_lock_ids", 0))


@pytest.mark.parametrize("case", ["tenant", "core schema scalars", "block and folded", "flow collections",
                                  "quoted keys", "an empty key", "nested lists", "unicode", "exactly the budget"])
def test_plain_documents_are_built_from_events_without_positions(case: str) -> None:
    assert parse_fast(TEXTS[case])._values is None


def test_a_document_without_data_keeps_its_positions_and_drops_its_values() -> None:
    lean = parse_fast(BASE).without_data()
    assert lean.data is None and lean.position(("status",)) == (3, 1)
    located = parse(BASE).without_data()
    assert located.data is None and located.position(("status",)) == (3, 1)
