"""The placeholder search is skipped only for a tenant none of whose values can hold the placeholder."""

from __future__ import annotations

from datetime import date

from tenancy.loader import may_hold_placeholder
from tenancy.model import PLACEHOLDER


def test_a_placeholder_anywhere_in_the_document_is_found() -> None:
    assert may_hold_placeholder({"hospitable": {"api_key": PLACEHOLDER}})
    assert may_hold_placeholder({"properties": [{"name": "x"}, {"name": PLACEHOLDER}]})
    assert may_hold_placeholder({"display_name": f"Acme {PLACEHOLDER} Ltd"})  # inside a value: searched


def test_a_document_without_it_skips_the_search() -> None:
    assert not may_hold_placeholder({"slug": "acme", "properties": [{"name": "Flat 1", "since": date(2026, 1, 2)}]})


def test_a_document_json_cannot_write_is_searched() -> None:
    assert may_hold_placeholder({"odd": {(1, 2): "a key that is a pair"}})  # type: ignore[dict-item]
