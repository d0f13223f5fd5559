"""An event's id is never given to another (SQLite AUTOINCREMENT), and a replay restarts the age limit.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01

- The delivery's ``webhook-id`` is ``msg_<webhook_log.id>``, and the platform de-duplicates on it. SQLite gives
  a new row the largest id in the table plus one, so once a prune had deleted the newest rows, the next event
  got an id (and a ``webhook-id``) that an earlier, different event had already been delivered under, and the
  platform would drop it as a duplicate. With AUTOINCREMENT SQLite never hands out an id twice
  (https://www.sqlite.org/autoinc.html). SQLite adds it only by rebuilding the table: the log is copied once,
  while writers wait (``tenantctl db upgrade`` before the server starts, as for every migration);
  store.migrate turns foreign-key enforcement off for the rebuild, or dropping the old table would delete the
  attempts that refer to its rows, and checks every reference before committing. PostgreSQL's sequence
  already never goes back: there the step is a no-op.
- ``webhook_log.replayed_at``: when ``webhooks replay`` last queued the event again. The retries' age limit
  counts from there, so a replayed dead letter, received days ago, gets the whole retry budget again instead
  of one attempt.

Self-contained (no import of store.schema), like every migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild_on_sqlite(autoincrement: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("webhook_log", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    with op.batch_alter_table("webhook_log") as batch:
        batch.add_column(sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True))
    _rebuild_on_sqlite(True)


def downgrade() -> None:
    with op.batch_alter_table("webhook_log") as batch:
        batch.drop_column("replayed_at")
    _rebuild_on_sqlite(False)
