"""`tenantctl webhooks replay | prune | log | attempts` against the delivery queue, in process: what an operator
may do while a worker holds events, and what the commands say back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from store.delivery import claim_due
from tenantctl.cli import app

from .harness import accepted, insert


@pytest.fixture
def cli(db: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> Engine:
    """The commands run against ``db``."""
    monkeypatch.delenv("TENANTCTL_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", db.url.render_as_string(hide_password=False))
    monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path))
    return db


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _claim(engine: Engine, n: int) -> list[int]:
    """A worker claims ``n`` events: their attempts are under way, their lease runs for another minute."""
    items = claim_due(engine, claim="w1:a", now=datetime.now(UTC), lease=timedelta(minutes=1), limit=n,
                      providers=["hospitable"])
    return sorted(i.id for i in items)


def test_replay_leaves_an_event_whose_attempt_is_in_flight_and_says_so(cli: Engine) -> None:
    """Replaying an event a worker is delivering would start a second POST of the same webhook-id beside the
    first: it is left alone, counted, and the operator told to replay it after its attempt ends."""
    insert(cli, accepted(3))
    busy = _claim(cli, 2)
    code, out = run("webhooks", "replay", "--tenant", "acme")
    assert code == 0
    assert "queued 1 event(s) for delivery again" in out
    assert "2 in flight (a worker's attempt may be under way), not replayed: replay them again after their " \
           "attempt ends" in out
    code, out = run("webhooks", "replay", *map(str, busy))
    assert code == 1  # nothing queued
    assert "queued 0 event(s)" in out and "2 in flight" in out


def test_a_replayed_delivered_event_shows_plainly_as_pending(cli: Engine) -> None:
    """Replay starts a new queueing: what described the last one (its status, error, delivery time) is cleared,
    so `webhooks log` shows the event as pending, not as pending yet answered 204 and delivered."""
    from store.delivery import Finished, finish

    insert(cli, accepted(1))
    now = datetime.now(UTC)
    [item] = claim_due(cli, claim="w1:a", now=now, lease=timedelta(minutes=1), limit=1, providers=["hospitable"])
    finish(cli, [Finished(item, now, "w1", "delivered", 204, 3.0, None, "delivered", None, now)])
    code, out = run("webhooks", "log")
    assert "delivered 1x 204" in out
    assert run("webhooks", "replay", str(item.id))[0] == 0
    code, out = run("webhooks", "log", "--format", "json")
    [row] = json.loads(out)
    assert (row["delivery_state"], row["attempts"], row["last_status"], row["last_error"], row["delivered_at"]) \
        == ("pending", 0, None, None, None)
    code, out = run("webhooks", "log")
    assert " pending 0x " in out and "204" not in out.split("pending 0x")[1].splitlines()[0]
    code, out = run("webhooks", "attempts", str(item.id))
    assert code == 0 and "delivered 204" in out  # the attempts made before the replay are all kept


def test_a_bulk_replay_says_how_many_were_delivered_already_and_a_dry_run_changes_nothing(cli: Engine) -> None:
    """`replay --tenant` sends every event of the tenant again, delivered ones included: it says how many, and
    --dry-run tells the same before anything is queued."""
    from store.delivery import Finished, finish

    insert(cli, accepted(3))
    now = datetime.now(UTC)
    [item] = claim_due(cli, claim="w1:a", now=now, lease=timedelta(minutes=1), limit=1, providers=["hospitable"])
    finish(cli, [Finished(item, now, "w1", "delivered", 204, 3.0, None, "delivered", None, now)])
    before = run("webhooks", "log", "--format", "json")[1]
    code, out = run("webhooks", "replay", "--tenant", "acme", "--dry-run")
    assert code == 0 and out.splitlines()[0] == ("would queue 3 event(s) for delivery again (1 of them delivered "
                                                 "already: would be sent again); dry run: nothing changed")
    assert run("webhooks", "log", "--format", "json")[1] == before
    code, out = run("webhooks", "replay", "--tenant", "acme")
    assert code == 0 and out.splitlines()[0] == ("queued 3 event(s) for delivery again (1 of them delivered "
                                                 "already: sent again)")
    assert {r["delivery_state"] for r in json.loads(run("webhooks", "log", "--format", "json")[1])} == {"pending"}


def test_prune_of_undelivered_events_keeps_those_in_flight_and_says_so(cli: Engine) -> None:
    """`--include-undelivered` deletes what was never delivered, but not an event a worker is delivering: its
    attempt is under way and its outcome will be recorded; a later prune deletes it."""
    from store.webhook_log import query_log

    insert(cli, accepted(3, at=datetime.now(UTC) - timedelta(hours=1)))
    [busy] = _claim(cli, 1)
    code, out = run("webhooks", "prune", "--older-than", "1m", "--include-undelivered")
    assert code == 0 and "deleted 2 webhook record(s)" in out
    assert "1 in flight (a worker's attempt may be under way), kept: prune again after their attempt ends" in out
    rows, _ = query_log(cli)
    assert [r.id for r in rows] == [busy]


@pytest.mark.parametrize(("args", "named", "allowed"), [
    (("webhooks", "replay", "99999999999999999999"), "'ids'", "from 1 to 9223372036854775807"),
    (("webhooks", "replay", "0"), "'ids'", "from 1 to 9223372036854775807"),
    (("webhooks", "attempts", "99999999999999999999"), "'log_id'", "from 1 to 9223372036854775807"),
    (("webhooks", "prune", "--older-than", "999999999d"), "--older-than", "from 0s to 36500d"),
    (("webhooks", "prune", "--older-than", "9" * 5000 + "s"), "--older-than", "from 0s to 36500d"),
    (("webhooks", "replay", "--since", "1000000000w"), "--since", "from 0s to 36500d"),
    (("webhooks", "replay", "--until", "36501d"), "--until", "from 0s to 36500d"),
    (("webhooks", "log", "--since", "1000000000w"), "--since", "from 0s to 36500d"),
    (("webhooks", "stats", "--window", "99999999999w"), "--window", "from 0s to 36500d"),
    (("webhooks", "replay", "--until", "9999-12-31T23:00-10:00"), "--until", "years 1 to 9999 UTC"),
])
def test_an_argument_out_of_range_is_a_usage_error_naming_it_and_the_range(
        cli: Engine, args: tuple[str, ...], named: str, allowed: str) -> None:
    """Not a database error with its SQL (PostgreSQL's bigint), nor an OverflowError (SQLite, datetime), but a
    usage error: click's 2 here, which `tenantctl` itself turns into its exit 1 for every usage error."""
    code, out = run(*args)
    assert code == 2, out
    assert named in out and allowed in out, out
    assert "Error:" in out and "Traceback" not in out and "SELECT" not in out and "Overflow" not in out


def test_the_longest_age_allowed_works(cli: Engine) -> None:
    insert(cli, accepted(1))
    assert run("webhooks", "prune", "--older-than", "36500d", "--include-undelivered")[0] == 0
    assert run("webhooks", "replay", "--since", "5214w")[0] == 0


def _rejected(engine: Engine) -> int:
    """A refused request's row (bad signature): in the log, never an event to deliver."""
    from store.webhook_log import WebhookRecord, query_log

    insert(engine, [WebhookRecord(received_at=datetime.now(UTC), tenant="acme", provider="hospitable",
                                  outcome="rejected", status_code=401, reason="bad signature")])
    rows, _ = query_log(engine, outcome="rejected")
    return rows[0].id


def test_replay_of_ids_that_do_not_exist_or_were_never_events_says_so(cli: Engine) -> None:
    insert(cli, accepted(1))
    bad = _rejected(cli)
    code, out = run("webhooks", "replay", "999", str(bad))
    assert code == 1
    assert "queued 0 event(s) for delivery again" in out
    assert "no webhook-log record with ID 999" in out
    assert f"ID {bad}: a rejected or duplicate request, never an event to deliver" in out


def test_replay_of_an_id_the_other_options_exclude_names_the_option_and_the_events_value(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "replay", "1", "--tenant", "blue-harbor")
    assert code == 1
    assert "event 1 is not selected by the options given: --tenant 'blue-harbor', but its tenant is 'acme'" in out
    code, out = run("webhooks", "replay", "1", "--dead")
    assert code == 1 and "--dead, but it is pending" in out


def test_replay_some_ids_queued_still_names_those_that_were_not(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "replay", "1", "999")
    assert code == 0 and "queued 1 event(s)" in out and "no webhook-log record with ID 999" in out


def test_replay_of_a_tenant_without_events_says_so_escaped(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "replay", "--tenant", "nosuch\x1b[2J")
    assert code == 1
    assert "no event of tenant 'nosuch\\x1b[2J' in the webhook log" in out and "\x1b" not in out


def test_replay_of_an_empty_time_range_is_a_usage_error_before_the_database(
        cli: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")  # never reached
    code, out = run("webhooks", "replay", "--since", "1h", "--until", "2h")
    assert code == 2, out
    assert "--since" in out and "is not before --until" in out and "--since 2h --until 1h" in out


def test_replay_that_matches_nothing_else_says_no_event_matches(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "replay", "--dead")
    assert code == 1 and "no accepted event matches the options given" in out


def test_attempts_of_an_event_that_does_not_exist_is_an_error(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "attempts", "7")
    assert code == 1
    assert "no webhook-log record with ID 7: no such event" in out
    assert "no delivery attempts recorded" not in out


def test_attempts_of_an_event_not_attempted_yet_or_never_queued_is_not_an_error(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "attempts", "1")
    assert code == 0 and "no delivery attempts recorded for event 1" in out
    bad = _rejected(cli)
    code, out = run("webhooks", "attempts", str(bad))
    assert code == 0 and f"no delivery attempts recorded for event {bad}: a rejected or duplicate request" in out


def _set_states(engine: Engine, states: dict[int, str]) -> None:
    from sqlalchemy import update

    from store.schema import webhook_log

    with engine.begin() as conn:
        for log_id, state in states.items():
            conn.execute(update(webhook_log).where(webhook_log.c.id == log_id).values(delivery_state=state))


def test_log_by_state_lists_only_the_events_in_the_states_asked_for(cli: Engine) -> None:
    """`--state` is one state or several (repeated); it is part of the query, so `--limit` counts matching events
    only: the one dead event is found behind the newer pending ones, and refused requests (never queued) match
    no state."""
    insert(cli, accepted(6))
    _rejected(cli)
    _set_states(cli, {1: "dead", 2: "delivered", 3: "retrying"})  # 4, 5, 6 stay pending
    code, out = run("webhooks", "log", "--state", "dead", "--limit", "1", "--format", "json")
    assert code == 0, out
    assert [(r["id"], r["delivery_state"]) for r in json.loads(out)] == [(1, "dead")]
    code, out = run("webhooks", "log", "--state", "pending", "--state", "retrying", "--format", "json")
    assert [(r["id"], r["delivery_state"]) for r in json.loads(out)] == [
        (6, "pending"), (5, "pending"), (4, "pending"), (3, "retrying")]
    code, out = run("webhooks", "log", "--state", "delivered", "--tenant", "acme")
    assert code == 0 and " delivered 0x " in out and "pending" not in out and "rejected" not in out
    code, out = run("webhooks", "log", "--state", "dead", "--tenant", "blue-harbor")
    assert code == 0 and "no webhook requests match" in out


def test_log_by_an_unknown_state_is_a_usage_error_naming_the_states(cli: Engine) -> None:
    code, out = run("webhooks", "log", "--state", "stuck")
    assert code == 2, out
    assert "Invalid value for '--state'" in out and "'stuck' is not one of 'pending', 'retrying', 'delivered', " \
        "'dead'" in out


def test_log_by_state_of_refused_requests_is_a_usage_error(cli: Engine) -> None:
    """Refused requests are never queued for delivery: together the two options could only list nothing."""
    code, out = run("webhooks", "log", "--rejected", "--state", "dead")
    assert code == 2, out
    assert "a refused request has no delivery state: use --rejected or --state, not both" in out


def test_log_of_an_unknown_provider_is_a_usage_error_not_an_empty_list(cli: Engine) -> None:
    code, out = run("webhooks", "log", "--provider", "hospitible")
    assert code == 2, out
    assert "--provider" in out and "one of hospitable, whatsapp, nuki, beds24" in out


def test_stats_counts_pending_and_retrying_apart_as_the_page_metrics_and_log_do(cli: Engine) -> None:
    """`webhooks stats` has a `retrying` column beside `pending` (it counted both as pending), in text and JSON;
    the oldest waiting age covers both."""
    insert(cli, accepted(4, at=datetime.now(UTC) - timedelta(minutes=5)))
    _set_states(cli, {1: "retrying", 2: "retrying", 3: "dead"})  # 4 stays pending
    code, out = run("webhooks", "stats", "--format", "json")
    assert code == 0, out
    [row] = json.loads(out)
    assert (row["tenant"], row["pending"], row["retrying"], row["dead"]) == ("acme", 1, 2, 1)
    assert 290 <= row["oldest_pending_age_s"] < 400
    code, out = run("webhooks", "stats")
    assert code == 0, out
    header = next(line for line in out.splitlines() if "tenant" in line and "provider" in line)
    assert "pending" in header and "retrying" in header and "oldest" in header
    assert [c.strip() for c in next(line for line in out.splitlines() if "acme" in line).split("│")][7:10] == [
        "1", "2", "1"]


@pytest.mark.parametrize("args", [("webhooks", "log"), ("webhooks", "stats"), ("webhooks", "attempts", "1"),
                                  ("webhooks", "replay", "--dead")])
def test_a_mistyped_state_directory_is_named_and_no_second_database_is_created(
        args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A typo in TENANTCTL_STATE_DIR created the directory and an empty database there, then advised migrating
    it, while the events sat in the real one."""
    monkeypatch.delenv("TENANTCTL_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TENANTCTL_STATE_DIR", str(tmp_path / "sate" / "x"))
    code, out = run(*args)
    assert code == 1, out
    assert f"no database at {tmp_path / 'sate' / 'x' / 'tenantctl.db'}: nothing was recorded there" in out
    assert not (tmp_path / "sate").exists()


def test_the_log_shows_an_event_in_flight_and_when_a_waiting_one_is_tried_next(cli: Engine) -> None:
    """`pending 1x` said nothing of a dead worker's claim, and `retrying 1x 429` nothing of a Retry-After that put
    the next try an hour out: only `replay` and the database knew."""
    from store.delivery import Finished, finish

    insert(cli, accepted(3))
    now = datetime.now(UTC)
    first, second = claim_due(cli, claim="w1:a", now=now, lease=timedelta(minutes=1), limit=2,
                              providers=["hospitable"])
    later = now + timedelta(hours=1)
    finish(cli, [Finished(second, now, "w1", "failed", 429, 3.0, "HTTP 429", "retrying", later, None)])
    code, out = run("webhooks", "log")
    assert code == 0, out
    lines = {int(line.split()[0]): " ".join(line.split()) for line in out.splitlines()[1:]}
    assert f"; in flight (claimed by a worker until {now + timedelta(minutes=1):%Y-%m-%d %H:%M}" in lines[first.id]
    assert f"retrying 1x 429 event evt-1; next try {later:%Y-%m-%d %H:%M}" in lines[second.id]
    assert "in flight" not in lines[3] and "next try" not in lines[3]  # due now
    rows = {r["id"]: r for r in json.loads(run("webhooks", "log", "--format", "json")[1])}
    assert rows[first.id]["in_flight"] is True and rows[second.id]["in_flight"] is False
    assert rows[second.id]["next_attempt_at"].startswith(f"{later:%Y-%m-%dT%H:%M}")


def test_a_log_filtered_by_a_slug_with_no_event_says_to_check_the_slug(cli: Engine) -> None:
    insert(cli, accepted(1))
    code, out = run("webhooks", "log", "--tenant", "ACME")
    assert code == 0 and "no webhook requests match" in out
    assert "no accepted event of tenant 'ACME' in the webhook log (check the slug: `tenantctl list`)" in out
    code, out = run("webhooks", "log", "--tenant", "acme", "--rejected")  # a known tenant, only nothing refused
    assert code == 0 and "no webhook requests match" in out and "check the slug" not in out


def test_attempts_shows_an_attempt_whose_worker_died_before_recording_it(cli: Engine) -> None:
    """After a `kill -9` the list began at attempt 2: nothing said the platform may have received a first one."""
    from store.delivery import Finished, finish

    insert(cli, accepted(1))
    now = datetime.now(UTC)
    claim_due(cli, claim="w1:a", now=now, lease=timedelta(minutes=1), limit=1, providers=["hospitable"])  # then dies
    later = now + timedelta(minutes=2)  # the lease ended: another worker claims it again
    [item] = claim_due(cli, claim="w2:a", now=later, lease=timedelta(minutes=1), limit=1, providers=["hospitable"])
    finish(cli, [Finished(item, later, "w2", "delivered", 204, 3.0, None, "delivered", None, later)])
    code, out = run("webhooks", "attempts", str(item.id))
    assert code == 0, out
    lines = [" ".join(line.split()) for line in out.splitlines()[1:]]
    assert lines[0].startswith("1 - lost - - no outcome recorded: its worker stopped before recording it")
    assert lines[1].startswith("2 ") and " delivered 204 " in lines[1]
