"""Listing commands never create nor migrate a database: on a fresh checkout they say nothing is recorded;
on an outdated schema they name `tenantctl db upgrade` (as `webhooks log` and `serve` do)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import RunCli

LISTINGS = [("runs", "list"), ("lock", "list"), ("provider-state", "list")]


@pytest.mark.parametrize("command", LISTINGS, ids=" ".join)
def test_a_listing_on_a_fresh_checkout_says_nothing_is_recorded_and_creates_nothing(
        cli: RunCli, tmp_path: Path, command: tuple[str, str]) -> None:
    db = tmp_path / "fresh.db"
    env = {"DATABASE_URL": f"sqlite:///{db}"}
    r = cli(*command, env=env)
    assert r.code == 0, r.all
    assert f"no database yet at {db}: nothing recorded" in r.err
    assert not db.exists()
    r = cli(*command, "--format", "json", env=env)
    assert (r.code, json.loads(r.out)) == (0, [])
    assert not db.exists()


def test_a_listing_on_an_empty_sqlite_file_does_not_migrate_it(cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    r = cli("runs", "list", env={"DATABASE_URL": f"sqlite:///{db}"})
    assert r.code == 0 and "nothing recorded" in r.err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_listing_on_an_outdated_schema_names_db_upgrade(cli: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.execute("INSERT INTO alembic_version VALUES ('0001')")
    r = cli("lock", "list", env={"DATABASE_URL": f"sqlite:///{db}"})
    assert r.code == 1
    assert "tenantctl db upgrade" in r.err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
