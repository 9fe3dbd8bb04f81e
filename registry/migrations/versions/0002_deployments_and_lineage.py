"""Deployments (desired state), lineage of versions and deployment names in the ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_model.id"), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_version.id"), nullable=False),
        sa.Column("standby_version_id", sa.Integer(), sa.ForeignKey("model_version.id"), nullable=True),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_deployment_name", "deployment", ["name"], unique=True)
    op.create_index("ix_deployment_model_id", "deployment", ["model_id"])
    op.create_index("ix_deployment_version_id", "deployment", ["version_id"])
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("origin", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("parent_version", sa.Integer(), nullable=True))
    with op.batch_alter_table("event") as batch:
        batch.add_column(sa.Column("deployment", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event") as batch:
        batch.drop_column("deployment")
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("parent_version")
        batch.drop_column("origin")
    op.drop_table("deployment")
