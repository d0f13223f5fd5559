"""Reading the webhook log: filters, keyset paging, stats windows, pruning, last verified event."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from store.engine import begin_write
from store.webhook_log import (
    StatRow,
    WebhookRecord,
    last_verified_event,
    prune,
    query_log,
    stats,
    write_batch,
)
from tests.store.helpers import T0, rec

H = timedelta(hours=1)


def _write(engine: Engine, *records: WebhookRecord) -> None:
    for record in records:  # one batch each: ids follow arrival order
        with begin_write(engine) as conn:
            write_batch(conn, [record])


@pytest.fixture
def log(engine: Engine) -> Engine:
    _write(
        engine,
        rec(received_at=T0 - 30 * H, event_id="old"),  # outside a 24 h window
        rec(received_at=T0 - 2 * H, event_id="e1"),
        rec(received_at=T0 - H, event_id="e1"),  # duplicate
        rec(received_at=T0 - H, outcome="rejected", status_code=401, reason="bad_signature", body=None),
        rec(received_at=T0, provider="whatsapp", event_id="w1"),
        rec(received_at=T0, tenant=None, outcome="rejected", status_code=404, reason="unknown_tenant"),
        rec(received_at=T0 + H, event_id="future"),  # after `now`
    )
    return engine


@pytest.mark.parametrize(
    ("filters", "expected_event_ids"),
    [
        ({}, ["future", "evt-1", "w1", "evt-1", "e1", "e1", "old"]),
        ({"provider": "whatsapp"}, ["w1"]),
        ({"tenant": "acme", "outcome": "rejected"}, ["evt-1"]),
        ({"outcome": "duplicate"}, ["e1"]),
        ({"since": T0 - H, "until": T0}, ["evt-1", "e1"]),  # since inclusive, until exclusive
        ({"tenant": "nobody"}, []),
    ],
)
def test_query_log_filters_newest_first(
    log: Engine, filters: dict[str, object], expected_event_ids: list[str]
) -> None:
    rows, cursor = query_log(log, **filters)  # type: ignore[arg-type]
    assert [r.event_id for r in rows] == expected_event_ids
    assert cursor is None


def test_query_log_pages_by_cursor_without_gaps_or_repeats(log: Engine) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        rows, cursor = query_log(log, limit=3, cursor=cursor)
        seen.extend(r.id for r in rows)
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 7


def test_a_page_that_ends_exactly_at_the_last_row_has_no_next_cursor(log: Engine) -> None:
    rows, cursor = query_log(log, limit=7)
    assert len(rows) == 7
    assert cursor is None


def test_stats_count_per_tenant_and_provider_within_the_window(log: Engine) -> None:
    assert stats(log, now=T0) == [
        StatRow("acme", "hospitable", T0 - 2 * H, accepted=1, rejected=1, duplicate=1),
        StatRow("acme", "whatsapp", T0, accepted=1, rejected=0, duplicate=0),
        StatRow(None, "hospitable", None, accepted=0, rejected=1, duplicate=0),
    ]


def test_stats_window_is_injected(log: Engine) -> None:
    assert stats(log, now=T0 - 90 * 60 * timedelta(seconds=1), window=H) == [
        StatRow("acme", "hospitable", T0 - 2 * H, accepted=1, rejected=0, duplicate=0),
    ]
    assert stats(log, now=T0 + 100 * H) == []


def test_prune_deletes_only_older_rows(log: Engine) -> None:
    # Both older rows are accepted events not yet delivered: kept unless pruning is told otherwise.
    assert prune(log, older_than=T0 - H) == 0
    assert prune(log, older_than=T0 - H, include_undelivered=True) == 2
    assert prune(log, older_than=T0 - H, include_undelivered=True) == 0
    rows, _ = query_log(log)
    assert min(r.received_at for r in rows) == T0 - H


def test_an_id_pruned_away_is_never_given_to_a_later_event(engine: Engine) -> None:
    """An event's id is its delivery's webhook-id, on which the platform de-duplicates: even after a prune
    took the newest events, the next one gets an id never given before."""
    _write(engine, rec(event_id="a"), rec(event_id="b"))
    before, _ = query_log(engine)
    assert prune(engine, older_than=T0 + H, include_undelivered=True) == 2
    _write(engine, rec(event_id="c"))
    after, _ = query_log(engine)
    assert [r.id for r in after] == [max(r.id for r in before) + 1]


def test_last_verified_event_counts_accepted_and_duplicate_only(log: Engine) -> None:
    assert last_verified_event(log, "acme", "hospitable") == T0 + H
    assert last_verified_event(log, "acme", "whatsapp") == T0
    assert last_verified_event(log, "acme", "nuki") is None
    _write(log, rec(received_at=T0 + 5 * H, tenant="beta", outcome="rejected", status_code=401, body=None))
    assert last_verified_event(log, "beta", "hospitable") is None
    _write(log, rec(received_at=T0 + 6 * H, tenant="beta", event_id="b1"))
    _write(log, rec(received_at=T0 + 7 * H, tenant="beta", event_id="b1"))
    verified = last_verified_event(log, "beta", "hospitable")
    assert verified == T0 + 7 * H
    assert verified is not None and verified.tzinfo is not None


def test_query_log_rejects_a_useless_limit(engine: Engine) -> None:
    with pytest.raises(ValueError, match="limit"):
        query_log(engine, limit=0)
