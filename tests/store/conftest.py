"""Every storage test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL comes from TENANTCTL_TEST_POSTGRES_URL (default: the local server, database ``test``). When it
cannot be reached the postgres variants are skipped, unless CI is set: then they fail. Each pytest
process (xdist worker) works in its own schema, selected through ``search_path``, created by the Alembic
migrations and dropped at the end; tables are emptied before each test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from store import locks
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import metadata

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def with_schema(url: str, schema: str) -> str:
    return (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The server URL, checked reachable (skip or, under CI, fail)."""
    url = os.environ.get("TENANTCTL_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    probe = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        msg = f"PostgreSQL unreachable ({type(exc.orig).__name__}); set TENANTCTL_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    finally:
        probe.dispose()
    return url


class PgSchemas:
    """Creates schemas private to this test process and drops them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.admin = create_engine(url)
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.created: list[str] = []

    def new(self) -> str:
        name = f"tenantctl_test_{self.worker}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        self.created.append(name)
        return with_schema(self.url, name)

    def drop_all(self) -> None:
        with self.admin.begin() as conn:
            for name in self.created:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_schemas(pg_url: str) -> Iterator[PgSchemas]:
    schemas = PgSchemas(pg_url)
    yield schemas
    schemas.drop_all()


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
