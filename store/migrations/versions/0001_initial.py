"""Initial schema: webhook log, reconcile runs and changes, tenant locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Self-contained on purpose (no import of store.schema): a migration must keep describing the schema of
its time when the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACCEPTED_WITH_ID = "outcome = 'accepted' AND event_id IS NOT NULL"


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("finished_at", _ts(), nullable=True),
        sa.Column("plan_checksum", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("tenants", sa.JSON(), nullable=False),
        sa.CheckConstraint("kind IN ('plan', 'apply')", name=op.f("ck_reconcile_runs_kind")),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed', 'partial', 'no_changes')",
            name=op.f("ck_reconcile_runs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    op.create_index(op.f("ix_reconcile_runs_started_at"), "reconcile_runs", ["started_at"])

    op.create_table(
        "webhook_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("received_at", _ts(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("body_size", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('accepted', 'rejected', 'duplicate')", name=op.f("ck_webhook_log_outcome")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_log")),
    )
    op.create_index(op.f("ix_webhook_log_outcome"), "webhook_log", ["outcome"])
    op.create_index(op.f("ix_webhook_log_received_at"), "webhook_log", ["received_at"])
    op.create_index(
        op.f("ix_webhook_log_tenant_provider_received_at"),
        "webhook_log",
        ["tenant", "provider", "received_at"],
    )
    op.create_index(
        "uq_webhook_log_accepted_event",
        "webhook_log",
        ["provider", "tenant", "event_id"],
        unique=True,
        sqlite_where=sa.text(_ACCEPTED_WITH_ID),
        postgresql_where=sa.text(_ACCEPTED_WITH_ID),
    )

    op.create_table(
        "reconcile_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recorded_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('planned', 'applied', 'failed', 'skipped', 'not_attempted')",
            name=op.f("ck_reconcile_changes_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconcile_runs.id"],
            name=op.f("fk_reconcile_changes_run_id_reconcile_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_changes")),
    )
    op.create_index(op.f("ix_reconcile_changes_run_id"), "reconcile_changes", ["run_id"])
    op.create_index(
        op.f("ix_reconcile_changes_tenant_recorded_at"), "reconcile_changes", ["tenant", "recorded_at"]
    )

    op.create_table(
        "tenant_locks",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", _ts(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("expires_at", _ts(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["reconcile_runs.id"],
            name=op.f("fk_tenant_locks_run_id_reconcile_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_locks")),
    )


def downgrade() -> None:
    op.drop_table("tenant_locks")
    op.drop_table("reconcile_changes")
    op.drop_table("webhook_log")
    op.drop_table("reconcile_runs")
