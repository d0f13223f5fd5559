"""Health results: one row per checked resource per `tenantctl health` run.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("healthy", "progressing", "degraded", "missing", "unknown", "suspended")


def upgrade() -> None:
    op.create_table(
        "health_results",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("tenant_status", sa.String(length=16), nullable=True),
        sa.Column("health", sa.String(length=16), nullable=False),
        sa.Column("sync", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("hint", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.CheckConstraint("health IN (" + ", ".join(repr(s) for s in _STATUSES) + ")",
                           name=op.f("ck_health_results_health")),
        sa.PrimaryKeyConstraint("id", name="pk_health_results"),
    )
    op.create_index("ix_health_results_tenant_provider_checked_at", "health_results",
                    ["tenant", "provider", "checked_at"])
    op.create_index("ix_health_results_checked_at", "health_results", ["checked_at"])


def downgrade() -> None:
    op.drop_index("ix_health_results_checked_at", table_name="health_results")
    op.drop_index("ix_health_results_tenant_provider_checked_at", table_name="health_results")
    op.drop_table("health_results")
