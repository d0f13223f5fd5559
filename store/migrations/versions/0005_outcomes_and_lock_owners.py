"""Unknown write outcomes, aborted runs, and who holds a lock (host and pid, to tell dead holders).

- reconcile_changes.outcome gains `confirmed` (applied, known by reading back after a lost answer),
  `not_applied` and `unknown`.
- reconcile_runs.status gains `aborted` (the process died; found out the next time anyone looks).
- tenant_locks and reconcile_runs gain `host` and `pid`: a lock whose holder ran on this host under a pid
  that is not alive any more is taken over; such a run still `running` is marked `aborted`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_OUTCOMES = "outcome IN ('planned', 'applied', 'failed', 'skipped', 'not_attempted')"
NEW_OUTCOMES = ("outcome IN ('planned', 'applied', 'confirmed', 'not_applied', 'unknown', 'failed', "
                "'skipped', 'not_attempted')")
OLD_STATUSES = "status IN ('running', 'succeeded', 'failed', 'partial', 'no_changes')"
NEW_STATUSES = "status IN ('running', 'succeeded', 'failed', 'partial', 'no_changes', 'aborted')"


def _swap_check(table: str, name: str, condition: str) -> None:
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def upgrade() -> None:
    _swap_check("reconcile_changes", "outcome", NEW_OUTCOMES)
    _swap_check("reconcile_runs", "status", NEW_STATUSES)
    for table in ("tenant_locks", "reconcile_runs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("host", sa.String(length=255), nullable=True))
            batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("tenant_locks", "reconcile_runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pid")
            batch.drop_column("host")
    op.execute("UPDATE reconcile_runs SET status = 'failed' WHERE status = 'aborted'")
    op.execute("UPDATE reconcile_changes SET outcome = 'failed' "
               "WHERE outcome IN ('confirmed', 'not_applied', 'unknown')")
    _swap_check("reconcile_runs", "status", OLD_STATUSES)
    _swap_check("reconcile_changes", "outcome", OLD_OUTCOMES)
