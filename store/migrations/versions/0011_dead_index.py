"""A partial index of the dead letters, so counting the delivery queue never reads the whole log.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

The delivery worker's metrics (each scrape) and the Integrations page count the queue per provider and state:
pending and retrying rows are found through ``ix_webhook_log_due``, but nothing indexed the dead ones, so the
count scanned every row of the log (SQLite: ``SCAN webhook_log``), on a log of millions at every scrape. This
index holds only dead rows (``provider, tenant``: what the counts group by): an accepted event is inserted
pending, so the insert path never touches it. Building it reads the log once (``tenantctl db upgrade`` before
the server starts, as for every migration).

Self-contained (no import of store.schema), like every migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEAD = "delivery_state = 'dead'"


def upgrade() -> None:
    op.create_index("ix_webhook_log_dead", "webhook_log", ["provider", "tenant"],
                    sqlite_where=sa.text(_DEAD), postgresql_where=sa.text(_DEAD))


def downgrade() -> None:
    op.drop_index("ix_webhook_log_dead", table_name="webhook_log")
