"""Fixtures of the delivery tests: a migrated database, the fake platform, and workers started on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from store.engine import make_engine
from store.migrate import upgrade

from ..conftest import PgSchemas
from .harness import Stack, start_platform


def _stack(root: Path, url: str) -> Iterator[Stack]:
    (root / "state").mkdir(exist_ok=True)
    upgrade(url)
    platform = start_platform(root)
    engine = make_engine(url)
    stack = Stack(platform, url, engine, root)
    try:
        yield stack
    finally:
        for proc in stack.procs:
            proc.stop()
        platform.proc.stop()
        engine.dispose()


@pytest.fixture
def sqlite_stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(tmp_path, f"sqlite:///{tmp_path / 'state' / 'tenantctl.db'}")


@pytest.fixture
def pg_stack(tmp_path: Path, pg_schemas: PgSchemas) -> Iterator[Stack]:
    yield from _stack(tmp_path, pg_schemas.new())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A freshly migrated database (SQLite file, or a private PostgreSQL schema)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tenantctl.db'}"
    else:
        url = request.getfixturevalue("pg_schemas").new()
    upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
