"""The due index holds each provider's claim order: (provider, next_attempt_at, id), not next_attempt_at alone.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A claim takes the oldest due rows of the providers a worker delivers, ``ORDER BY next_attempt_at, id LIMIT n``.
With only next_attempt_at indexed, PostgreSQL had to read and sort every due row to find the first n: on a
backlog of 50,000 events each claim read and sorted all 50,000 (~13 ms, a disk sort). And on either database
the events of a provider without a destination (they stay pending) sat at the head of the index, read past by
every claim. Now a claim reads at most n entries from each delivered provider's range (store/delivery.py,
_claim_sql). The index is partial (due rows only), so it is as small as the queue; building it reads the log
once, while inserts wait (``tenantctl db upgrade`` before the server starts, as for every migration).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = "delivery_state IN ('pending', 'retrying')"


def _due_index(columns: list[str]) -> None:
    op.drop_index("ix_webhook_log_due", table_name="webhook_log")
    op.create_index("ix_webhook_log_due", "webhook_log", columns,
                    sqlite_where=sa.text(_DUE), postgresql_where=sa.text(_DUE))


def upgrade() -> None:
    _due_index(["provider", "next_attempt_at", "id"])


def downgrade() -> None:
    _due_index(["next_attempt_at"])
