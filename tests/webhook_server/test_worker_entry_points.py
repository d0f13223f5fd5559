"""A gevent worker patches with one read of the installed distributions' entry points, not one per module."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import pytest

from webhook_server.worker import entry_points_read_once

GROUP = "gevent.plugins.monkey.will_patch_all"


def test_lookups_while_patching_read_the_distributions_once_and_answer_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real, reads = metadata.entry_points, []

    def counted(**params: Any) -> Any:
        reads.append(params)
        return real(**params)

    monkeypatch.setattr(metadata, "entry_points", counted)
    expected = sorted(real(group=GROUP))
    with entry_points_read_once():
        answers = [sorted(metadata.entry_points(group=GROUP)) for _ in range(3)]
        other = list(metadata.entry_points(group="no.such.group"))
    assert answers == [expected] * 3 and other == []
    assert reads == [{}]  # one read of everything, then selections from it
    assert metadata.entry_points is counted  # put back as it was


def test_gevent_patching_still_finds_its_plugins() -> None:
    import gevent.events  # type: ignore[import-untyped]

    seen: list[Any] = []
    with entry_points_read_once():
        gevent.events.notify_and_call_entry_points(_Event(seen))
    assert seen  # gevent's own will_patch_all subscriber was found and called


class _Event:
    ENTRY_POINT_NAME = GROUP

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen
        self.module_name = "nothing"
        self.target_module = None
        self.patch_all_arguments: dict[str, Any] = {}

    def will_patch_module(self, name: str) -> bool:
        self.seen.append(name)
        return False
