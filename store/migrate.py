"""Schema migrations (Alembic, configured in code: the scripts live in ``store/migrations``).

The CLI's ``tenantctl db upgrade`` calls :func:`upgrade`; the webhook server and the reconciler call
:func:`require_up_to_date` at start so an old schema fails loudly instead of at the first insert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from store.engine import make_engine
from store.errors import DatabaseNotMigrated, StoreError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "DatabaseNotMigrated",
    "StoreError",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "is_up_to_date",
    "require_up_to_date",
    "upgrade",
]

_SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


# Alembic is imported only to migrate: the checks below read the version table and the scripts' names,
# so `serve`, `deliver` and the `webhooks` commands start without it (~0.1 s of every start here).
_VERSION_TABLE = "alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (idempotent: nothing happens when already there)."""
    from alembic import command

    def run(cfg: Config) -> None:
        conn: Connection = cfg.attributes["connection"]
        _refuse_unknown_schema(conn)
        command.upgrade(cfg, revision)

    _migrate(url_or_engine, run)


def _refuse_unknown_schema(conn: Connection) -> None:
    """Raise DatabaseNotMigrated for a schema no script can start from: one newer than this code's, or tables
    with no recorded revision (the first script would fail on them half-way, "table already exists")."""
    current, head = _read_revision(conn), head_revision()
    if current is not None and current > head:
        raise DatabaseNotMigrated(current, head)
    if current is None and inspect(conn).has_table("webhook_log"):
        raise DatabaseNotMigrated(None, head, unrecorded=True)


def downgrade(url_or_engine: str | Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (for rehearsing a rollback; the CLI only upgrades)."""
    from alembic import command

    _migrate(url_or_engine, lambda cfg: command.downgrade(cfg, revision))


def _migrate(url_or_engine: str | Engine, run: Callable[[Config], None]) -> None:
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.connect() as conn, _foreign_keys_held(conn) as check, conn.begin():
            run(alembic_config(conn))
            check()
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


@contextlib.contextmanager
def _foreign_keys_held(conn: Connection) -> Iterator[Callable[[], None]]:
    """On SQLite, foreign-key enforcement off for the migration; the block calls what it yields to check
    every reference before it commits (raises StoreError naming the first broken one). Elsewhere a no-op.

    SQLite changes a table by building a new one and dropping the old (Alembic's batch mode), and with
    enforcement on, dropping a table first deletes its rows, which cascades to the rows that refer to them
    (https://www.sqlite.org/foreignkeys.html §5; the procedure: https://www.sqlite.org/lang_altertable.html
    §7). The pragma is a no-op inside a transaction, so it is set before the migration's begins.
    """
    if conn.dialect.name != "sqlite":
        yield lambda: None
        return
    raw = conn.connection.dbapi_connection
    if raw is None:  # pragma: no cover - an open connection has its driver connection
        raise StoreError("no database connection to migrate")

    def check() -> None:
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(f"the migration left {len(broken)} row(s) referring to rows that do not exist "
                             f"(first: table {broken[0][0]}, row {broken[0][1]})")

    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield check
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def head_revision() -> str:
    """The newest script's revision: scripts are named ``<revision>_<what>.py`` with revisions numbered in
    the order they apply (tests/store/test_migrate.py holds this against Alembic's own revision graph)."""
    revisions = [p.name.split("_", 1)[0] for p in (_SCRIPT_LOCATION / "versions").glob("[0-9]*_*.py")]
    if not revisions:  # pragma: no cover - the package always ships 0001
        raise StoreError("no migration scripts found")
    return max(revisions)


def current_revision(engine: Engine) -> str | None:
    """The revision in Alembic's version table; None for a database never migrated."""
    with engine.connect() as conn:
        return _read_revision(conn)


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(_VERSION_TABLE):
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) > 1:  # the scripts form one line: several heads mean someone else's migrations
        raise StoreError(f"the database has {len(rows)} schema revisions ({', '.join(sorted(rows))}), "
                         "expected one")
    return rows[0] if rows else None


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def require_up_to_date(engine: Engine) -> None:
    """Raise :class:`DatabaseNotMigrated` unless the schema is at the head revision."""
    with engine.connect() as conn:
        current, head = _read_revision(conn), head_revision()
        if current != head:
            raise DatabaseNotMigrated(current, head,
                                      unrecorded=current is None and inspect(conn).has_table("webhook_log"))
