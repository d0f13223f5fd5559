"""The delivery outbox: delivery state on accepted webhook-log rows, and one row per delivery attempt.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01

Accepted rows already in the log are queued too (state ``pending``, due now): they were accepted for
the platform and never handed on. Self-contained (no import of store.schema), like every migration.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DUE = "delivery_state IN ('pending', 'retrying')"
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild on SQLite, which would have to re-create the partial indexes).
    for column in (
        sa.Column("delivery_state", sa.String(length=16), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("last_status", sa.SmallInteger(), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    ):
        op.add_column("webhook_log", column)
    op.execute("UPDATE webhook_log SET delivery_state = 'pending', next_attempt_at = received_at "
               "WHERE outcome = 'accepted'")
    op.create_index("ix_webhook_log_due", "webhook_log", ["next_attempt_at"],
                    sqlite_where=sa.text(_DUE), postgresql_where=sa.text(_DUE))
    op.create_table(
        "delivery_attempts",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("log_id", _BIG_ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=255), nullable=True),
        sa.CheckConstraint("outcome IN ('delivered', 'failed', 'error')", name=op.f("ck_delivery_attempts_outcome")),
        sa.ForeignKeyConstraint(["log_id"], ["webhook_log.id"], name=op.f("fk_delivery_attempts_log_id_webhook_log"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(op.f("ix_delivery_attempts_log_id"), "delivery_attempts", ["log_id"])
    op.create_index(op.f("ix_delivery_attempts_started_at"), "delivery_attempts", ["started_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempts_started_at"), table_name="delivery_attempts")
    op.drop_index(op.f("ix_delivery_attempts_log_id"), table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_webhook_log_due", table_name="webhook_log")
    for name in ("delivered_at", "last_error", "last_status", "claimed_by", "next_attempt_at", "attempts",
                 "delivery_state"):
        op.drop_column("webhook_log", name)  # SQLite >= 3.35 drops a column in place
