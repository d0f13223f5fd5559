"""Alembic environment, driven programmatically by :mod:`store.migrate` (no alembic.ini).

``store.migrate`` hands an open connection in ``config.attributes["connection"]``; the offline (SQL
script) mode is not supported: run ``tenantctl db upgrade`` against the database instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.schema import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place: let future migrations use batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported: run `tenantctl db upgrade`")

_connection = config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("store.migrations must be run through store.migrate (no connection given)")
run_migrations(_connection)
