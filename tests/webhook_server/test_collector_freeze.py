"""The master loads tenants with the cyclic collector off, and freezes what the load left before it is on again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from webhook_server.server_hooks import collector_paused_then_frozen


@pytest.fixture(autouse=True)
def _collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if was else gc.disable)()


def test_a_load_runs_without_the_collector_and_leaves_its_objects_frozen() -> None:
    gc.unfreeze()
    with collector_paused_then_frozen():
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_a_failed_load_is_not_frozen_and_the_collector_is_back_on() -> None:
    gc.unfreeze()
    with pytest.raises(RuntimeError), collector_paused_then_frozen():
        raise RuntimeError("tenant files refused")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with collector_paused_then_frozen():
        pass
    assert not gc.isenabled()
