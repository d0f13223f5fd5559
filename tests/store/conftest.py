"""Every storage test runs on SQLite (a temporary file) and on PostgreSQL (``pg_schemas``, in the root
conftest). Each pytest process (xdist worker) works in its own schema, created by the Alembic migrations
and dropped at the end; tables are emptied before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from store import locks
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import metadata

from ..conftest import PgSchemas


@pytest.fixture(scope="session")
def pg_migrated_url(pg_schemas: PgSchemas) -> str:
    url = pg_schemas.new()
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: object) -> str:
    """A database with no tables at all."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/empty/tenantctl.db"
    schemas: PgSchemas = request.getfixturevalue("pg_schemas")
    return schemas.new()


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: object) -> str:
    """A migrated database with empty tables."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/tenantctl.db"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("pg_migrated_url"))
    admin = make_engine(url)
    try:
        with admin.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        admin.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    # A failed lock test must not leave an advisory session open in this process.
    for key in list(locks._sessions):
        locks._sessions.pop(key)[0].close()
    eng.dispose()
