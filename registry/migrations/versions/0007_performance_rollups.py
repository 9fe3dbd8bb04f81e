"""Realised performance per deployment, version and minute (predictions joined with their labels).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "performance_rollup",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predicted", sa.Integer(), nullable=False),
        sa.Column("labelled", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("log_loss", sa.Float(), nullable=True),
        sa.Column("mae", sa.Float(), nullable=True),
        sa.Column("rmse", sa.Float(), nullable=True),
        sa.Column("label_delay", sa.Float(), nullable=True),
        sa.UniqueConstraint("deployment", "at", "version", name="uq_performance_window"),
    )
    op.create_index("ix_performance_rollup_deployment", "performance_rollup", ["deployment"])
    op.create_index("ix_performance_rollup_at", "performance_rollup", ["at"])


def downgrade() -> None:
    op.drop_table("performance_rollup")
