"""Schema migrations (Alembic, configured in code: the scripts live in ``store/migrations``).

The CLI's ``tenantctl db upgrade`` calls :func:`upgrade`; the webhook server and the reconciler call
:func:`require_up_to_date` at start so an old schema fails loudly instead of at the first insert.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from store.engine import make_engine
from store.errors import DatabaseNotMigrated, StoreError

__all__ = [
    "DatabaseNotMigrated",
    "StoreError",
    "alembic_config",
    "current_revision",
    "head_revision",
    "is_up_to_date",
    "require_up_to_date",
    "upgrade",
]

_SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (idempotent: nothing happens when already there)."""
    engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        if isinstance(url_or_engine, str):
            engine.dispose()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("no migration scripts found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def require_up_to_date(engine: Engine) -> None:
    """Raise :class:`DatabaseNotMigrated` unless the schema is at the head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise DatabaseNotMigrated(current, head)
