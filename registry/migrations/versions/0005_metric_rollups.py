"""Rollups of serving metrics (10 s and 1 min windows) so charts keep their history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_rollup",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.Float(), nullable=False),
        sa.Column("ok", sa.Float(), nullable=False),
        sa.Column("client_errors", sa.Float(), nullable=False),
        sa.Column("server_errors", sa.Float(), nullable=False),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p95", sa.Float(), nullable=True),
        sa.Column("p99", sa.Float(), nullable=True),
        sa.Column("cpu", sa.Float(), nullable=True),
        sa.Column("rss", sa.Float(), nullable=True),
        sa.Column("drift_status", sa.String(length=32), nullable=True),
        sa.Column("drift_share", sa.Float(), nullable=True),
        sa.UniqueConstraint("deployment", "resolution", "at", name="uq_rollup_window"),
    )
    op.create_index("ix_metric_rollup_deployment", "metric_rollup", ["deployment"])
    op.create_index("ix_metric_rollup_at", "metric_rollup", ["at"])


def downgrade() -> None:
    op.drop_table("metric_rollup")
