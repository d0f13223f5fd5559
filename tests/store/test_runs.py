"""Plan/apply runs and their changes round-trip."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from store import runs
from store.runs import ChangeRecord, finish_run, get_run, list_runs, record_changes, start_run
from tests.store.helpers import T0


def test_a_run_and_its_changes_round_trip(engine: Engine) -> None:
    run_id = start_run(engine, "apply", "ana@laptop", ["acme", "beta"], "sha256:abc", now=T0)
    assert (
        record_changes(
            engine,
            run_id,
            [
                ChangeRecord("acme", "whatsapp", "whatsapp.waba_subscription[acme]", "create", "applied"),
                ChangeRecord(
                    "beta", "nuki", "nuki.lock[beta/x]", "update", "failed", error="HTTP 500 (req 7)"
                ),
                ChangeRecord("beta", "hospitable", "hospitable.webhook[beta]", "manual", "skipped"),
            ],
        )
        == 3
    )
    finish_run(engine, run_id, "partial", {"applied": 1, "failed": 1}, now=T0 + timedelta(seconds=9))

    run = get_run(engine, run_id)
    assert run is not None
    assert (run.kind, run.actor, run.status, run.plan_checksum) == (
        "apply",
        "ana@laptop",
        "partial",
        "sha256:abc",
    )
    assert (run.started_at, run.finished_at) == (T0, T0 + timedelta(seconds=9))
    assert run.tenants == ["acme", "beta"]
    assert run.summary == {"applied": 1, "failed": 1}
    assert [(c.tenant, c.action, c.outcome, c.error) for c in run.changes] == [
        ("acme", "create", "applied", None),
        ("beta", "update", "failed", "HTTP 500 (req 7)"),
        ("beta", "manual", "skipped", None),
    ]
    assert all(c.recorded_at.tzinfo is not None for c in run.changes)


def test_a_new_run_is_running_until_finished(engine: Engine) -> None:
    run_id = start_run(engine, "plan", "ci", ["acme"])
    run = get_run(engine, run_id)
    assert run is not None
    assert (run.status, run.finished_at, run.changes) == ("running", None, ())
    assert record_changes(engine, run_id, []) == 0


def test_list_runs_is_newest_first_and_limited(engine: Engine) -> None:
    ids = [start_run(engine, "plan", f"user{i}", ["acme"]) for i in range(4)]
    assert [r.id for r in list_runs(engine, limit=3)] == ids[::-1][:3]


def test_unknown_runs(engine: Engine) -> None:
    assert get_run(engine, 999) is None
    with pytest.raises(KeyError):
        finish_run(engine, 999, "failed")


def test_a_run_whose_process_died_is_marked_aborted_when_anyone_looks(engine: Engine) -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    dead = runs.start_run(engine, "plan", "ana@laptop", ["acme"], pid=gone.pid)
    alive = runs.start_run(engine, "apply", "bob@laptop", ["acme"])  # this very process
    assert runs.reap_dead_runs(engine) == [dead]
    statuses = {r.id: r.status for r in runs.list_runs(engine)}
    assert statuses == {dead: "aborted", alive: "running"}
    assert runs.reap_dead_runs(engine) == []


def test_new_outcomes_are_stored(engine: Engine) -> None:
    run_id = start_run(engine, "apply", "ana@laptop", ["acme"])
    outcomes = ("applied", "confirmed", "not_applied", "unknown", "failed", "not_attempted")
    record_changes(engine, run_id, [ChangeRecord("acme", "nuki", f"nuki.x[acme/{o}]", "create", o)  # type: ignore[arg-type]
                                    for o in outcomes])
    finish_run(engine, run_id, "aborted")
    run = get_run(engine, run_id)
    assert run is not None and run.status == "aborted"
    assert [c.outcome for c in run.changes] == list(outcomes)
