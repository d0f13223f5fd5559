"""One partial index of the queue, led by the tenant, so the Integrations page counts only its tenants' queue.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

The page counted the delivery queue of every tenant to show the 25 on it: pending and retrying rows were found
through ``ix_webhook_log_due`` (by provider and due time) and each row read from the table for its tenant and
receive time. With 400,000 queued events on SQLite that took ~0.5 s, during which the gevent worker serving the
page answered nothing else. ``ix_webhook_log_queue`` holds every pending, retrying and dead row as ``(tenant,
provider, delivery_state, received_at, replayed_at)``: a tenant's queue is one range of it, and a count and the
oldest waiting time (``COALESCE(replayed_at, received_at)``) are read from the index alone, and the dead rows,
which no index held, are counted without reading the log. Its price: an accepted event is inserted pending, so each
insert adds one entry (and leaves it when delivered). Building it reads the log once (``tenantctl db upgrade``
before the server starts, as for every migration).

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

_QUEUED = "delivery_state IN ('pending', 'retrying', 'dead')"


def upgrade() -> None:
    op.create_index("ix_webhook_log_queue", "webhook_log",
                    ["tenant", "provider", "delivery_state", "received_at", "replayed_at"],
                    sqlite_where=sa.text(_QUEUED), postgresql_where=sa.text(_QUEUED))


def downgrade() -> None:
    op.drop_index("ix_webhook_log_queue", table_name="webhook_log")
