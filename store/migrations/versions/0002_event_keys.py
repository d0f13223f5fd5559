"""Per-item de-duplication keys (a WhatsApp delivery may batch several messages and statuses).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_event_keys",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("item_key", sa.String(length=255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "tenant", "item_key", name="pk_webhook_event_keys"),
    )
    op.create_index("ix_webhook_event_keys_received_at", "webhook_event_keys", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_event_keys_received_at", table_name="webhook_event_keys")
    op.drop_table("webhook_event_keys")
