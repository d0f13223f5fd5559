"""Migrations build the schema from nothing and agree with the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, inspect

from store.engine import make_engine
from store.migrate import (
    DatabaseNotMigrated,
    current_revision,
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
        assert current_revision(engine) == head_revision() == "0009"
        require_up_to_date(engine)
        assert set(inspect(engine).get_table_names()) >= {
            "webhook_log",
            "reconcile_runs",
            "reconcile_changes",
            "tenant_locks",
        }
    finally:
        engine.dispose()


def test_models_and_migrations_agree(engine: Engine) -> None:
    assert _diff(engine, metadata) == []


def test_the_agreement_check_sees_a_model_change(engine: Engine) -> None:
    drifted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["tenant_locks"].append_column(Column("note", Integer()))
    assert [d[0] for d in _diff(engine, drifted) if isinstance(d, tuple)] == ["add_column"]
