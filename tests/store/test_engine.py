"""Engine construction and URL redaction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from store.engine import make_engine, redact_url, sqlite_file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///.state/tenantctl.db", "sqlite:///.state/tenantctl.db"),
        ("postgresql+psycopg://app:s3cret@db:5432/t", "postgresql+psycopg://app:***@db:5432/t"),
        ("postgresql+psycopg://app@db/t", "postgresql+psycopg://app@db/t"),
        ("postgresql+psycopg://app@db/t?password=s3cret", "postgresql+psycopg://app@db/t?password=***"),
        ("not a url s3cret", "<unparseable database URL>"),
    ],
)
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "s3cret" not in redact_url(url)


def test_sqlite_engine_creates_the_directory_and_sets_its_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/deep/er/t.db")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert (tmp_path / "deep" / "er" / "t.db").exists()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}


def test_a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """It holds every accepted webhook's body (guests' bookings and messages); the tokens beside it are 0600 too.
    What exists already keeps the operator's own permissions."""
    old_umask = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path}/state/t.db")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "state").iterdir()}
        engine.dispose()
        (tmp_path / "shared.db").touch(mode=0o640)
        make_engine(f"sqlite:///{tmp_path}/shared.db").dispose()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert modes == {"t.db": 0o600, "t.db-wal": 0o600, "t.db-shm": 0o600}
    assert stat.S_IMODE((tmp_path / "shared.db").stat().st_mode) == 0o640


def test_postgres_engine_pings_its_pool() -> None:
    engine = make_engine("postgresql+psycopg://u:pw@127.0.0.1:1/x")  # never connects here
    assert engine.pool._pre_ping
    assert engine.dialect.driver == "psycopg"


def test_unsupported_url_is_refused_without_its_password() -> None:
    with pytest.raises(ValueError, match="unsupported database URL") as info:
        make_engine("mysql://u:s3cret@h/db")
    assert "s3cret" not in str(info.value)


def test_postgres_connections_get_libpq_deadlines_and_the_servers_statement_timeout(pg_url: str) -> None:
    from sqlalchemy.engine import make_url

    from store.engine import pg_connect_args

    args = pg_connect_args(make_url(pg_url).query, 1234)
    assert {k: args[k] for k in ("connect_timeout", "keepalives", "tcp_user_timeout")} == {
        "connect_timeout": 5, "keepalives": 1, "tcp_user_timeout": 10_000}
    url = make_url(pg_url).update_query_dict({"options": "-csearch_path=public"}).render_as_string(
        hide_password=False)
    engine = make_engine(url, statement_timeout_ms=1234)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "1234ms"
            assert conn.execute(text("SHOW search_path")).scalar() == "public"  # the URL's options are kept
            with pytest.raises(Exception, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(3)"))
    finally:
        engine.dispose()
    plain = make_engine(pg_url)  # migrations and prunes: no statement timeout
    try:
        with plain.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    finally:
        plain.dispose()


@pytest.mark.parametrize(("url", "file"), [
    ("sqlite:///{dir}/state/tenantctl.db", "state/tenantctl.db"),
    ("sqlite:///file:{dir}/state/tenantctl.db?uri=true", "state/tenantctl.db"),
    ("sqlite:///file:{dir}/my%20state/t.db?uri=true", "my state/t.db"),
    ("sqlite:///file:mem1?mode=memory&cache=shared&uri=true", None),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("postgresql+psycopg://u@h:5432/d", None),
])
def test_the_file_of_a_sqlite_url_in_either_form(url: str, file: str | None, tmp_path: Path) -> None:
    """A `file:` URI names a file too: commands that only read must not create it, and it is created 0600."""
    assert sqlite_file(url.format(dir=tmp_path)) == (tmp_path / file if file else None)


def test_a_uri_form_sqlite_database_is_created_private_too(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        make_engine(f"sqlite:///file:{tmp_path}/u.db?uri=true").dispose()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "u.db").stat().st_mode) == 0o600
