"""Migrations build the schema from nothing and agree with the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, text

from store.engine import make_engine
from store.errors import StoreError
from store.migrate import (
    DatabaseNotMigrated,
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    is_up_to_date,
    require_up_to_date,
    upgrade,
)
from store.schema import metadata


def _diff(engine: Engine, target: MetaData) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, target))


@pytest.fixture
def migrated_alone(empty_url: str) -> Iterator[Engine]:
    """A migrated database of the test's own, whose version table it may change (db_url's is shared)."""
    upgrade(empty_url)
    engine = make_engine(empty_url)
    yield engine
    engine.dispose()


def test_an_empty_database_is_not_migrated_and_says_how_to_fix_it(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        assert not is_up_to_date(engine)
        with pytest.raises(DatabaseNotMigrated, match="run `tenantctl db upgrade`"):
            require_up_to_date(engine)
    finally:
        engine.dispose()


def test_upgrade_from_empty_reaches_head_and_is_idempotent(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)  # a second run changes nothing
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) == head_revision() == "0011"
        require_up_to_date(engine)
        assert set(inspect(engine).get_table_names()) >= {
            "webhook_log",
            "reconcile_runs",
            "reconcile_changes",
            "tenant_locks",
        }
    finally:
        engine.dispose()


def test_the_scripts_names_give_alembics_own_revisions_in_the_order_they_apply() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    in_order = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert in_order == sorted(in_order)  # one line, numbered as it applies
    assert head_revision() == scripts.get_current_head() == in_order[-1]


def test_the_recorded_revision_reads_as_alembic_reads_it(engine: Engine) -> None:
    with engine.connect() as conn:
        assert current_revision(engine) == MigrationContext.configure(conn).get_current_revision() == head_revision()


def test_a_database_with_two_revisions_is_refused_not_guessed(migrated_alone: Engine) -> None:
    with migrated_alone.begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('9999')"))
    with pytest.raises(StoreError, match="2 schema revisions"):
        require_up_to_date(migrated_alone)


def test_a_database_newer_than_this_code_says_so_and_is_not_migrated(migrated_alone: Engine) -> None:
    engine = migrated_alone
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9000'"))
    with pytest.raises(DatabaseNotMigrated, match="revision 9000, newer than this tenantctl"):
        require_up_to_date(engine)
    with pytest.raises(DatabaseNotMigrated, match="newer than this tenantctl"):
        upgrade(engine)
    assert current_revision(engine) == "9000"


def test_tables_without_a_recorded_revision_are_not_called_empty_nor_migrated_half_way(
        migrated_alone: Engine) -> None:
    engine = migrated_alone
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    with pytest.raises(DatabaseNotMigrated, match="tables but no recorded schema revision"):
        require_up_to_date(engine)
    with pytest.raises(DatabaseNotMigrated, match="tables but no recorded schema revision"):
        upgrade(engine)
    assert current_revision(engine) is None and inspect(engine).has_table("webhook_log")


def test_models_and_migrations_agree(engine: Engine) -> None:
    assert _diff(engine, metadata) == []


def test_the_agreement_check_sees_a_model_change(engine: Engine) -> None:
    drifted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["tenant_locks"].append_column(Column("note", Integer()))
    assert [d[0] for d in _diff(engine, drifted) if isinstance(d, tuple)] == ["add_column"]


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(text("SELECT count(*) FROM webhook_log")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM delivery_attempts")).scalar_one())


def _insert_event(engine: Engine, n: int) -> int:
    """One accepted, pending event with one failed attempt, as a 0009 database holds them; returns its id."""
    with engine.begin() as conn:
        log_id = conn.execute(text(
            "INSERT INTO webhook_log (received_at, tenant, provider, outcome, status_code, event_id, body_size, "
            "body, delivery_state, attempts, next_attempt_at, repeats) VALUES (CURRENT_TIMESTAMP, 'acme', "
            "'hospitable', 'accepted', 200, :e, 2, '{}', 'pending', 1, CURRENT_TIMESTAMP, 0) RETURNING id"),
            {"e": f"evt-{n}"}).scalar_one()
        conn.execute(text("INSERT INTO delivery_attempts (log_id, attempt, started_at, worker, outcome, "
                          "status_code) VALUES (:i, 1, CURRENT_TIMESTAMP, 'w', 'failed', 503)"), {"i": log_id})
    return int(log_id)


def _sqlite_schema(engine: Engine, kind: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted((str(n), " ".join(str(s).split())) for n, s in conn.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'webhook_log' AND type = :k AND sql IS NOT NULL"),
            {"k": kind}))


def test_migration_0010_keeps_every_event_and_attempt_and_never_gives_an_id_twice(
        empty_url: str, tmp_path: object) -> None:
    """0010 rebuilds SQLite's log with AUTOINCREMENT: the ids (webhook-ids) of pruned events are not given
    again. The rebuild keeps every row, every attempt referring to them (dropping the old table must not
    cascade to them) and every index, partial ones included; it goes down and up again the same way."""
    upgrade(empty_url, "0009")
    engine = make_engine(empty_url)
    try:
        ids = [_insert_event(engine, n) for n in range(3)]
        upgrade(empty_url)
        assert _counts(engine) == (3, 3)
        if engine.dialect.name == "sqlite":
            fresh = make_engine(f"sqlite:///{tmp_path}/fresh.db")
            metadata.create_all(fresh)
            assert _sqlite_schema(engine, "index") == _sqlite_schema(fresh, "index")
            assert "AUTOINCREMENT" in dict(_sqlite_schema(engine, "table"))["webhook_log"]
            fresh.dispose()
        with engine.begin() as conn:  # a prune takes the newest event
            conn.execute(text("DELETE FROM webhook_log WHERE id = :i"), {"i": ids[-1]})
        assert _insert_event(engine, 9) == ids[-1] + 1
        assert _counts(engine) == (3, 3)  # the pruned event's attempt went with it

        downgrade(engine, "0009")
        assert _counts(engine) == (3, 3)
        upgrade(engine)
        assert current_revision(engine) == head_revision() and _counts(engine) == (3, 3)
    finally:
        engine.dispose()
