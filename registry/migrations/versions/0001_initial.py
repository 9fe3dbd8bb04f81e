"""Models, versions, aliases, tags and the event ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registered_model",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("next_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registered_model_name", "registered_model", ["name"], unique=True)
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_model.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_size", sa.Integer(), nullable=False),
        sa.Column("artifact_format", sa.String(), nullable=False),
        sa.Column("trusted_types", sa.JSON(), nullable=False),
        sa.Column("estimator_class", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("python_version", sa.String(), nullable=False),
        sa.Column("sklearn_version", sa.String(), nullable=False),
        sa.Column("numpy_version", sa.String(), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("reference_sha256", sa.String(length=64), nullable=True),
        sa.Column("reference_rows", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("model_id", "version", name="uq_model_version"),
    )
    op.create_index("ix_model_version_model_id", "model_version", ["model_id"])
    op.create_index("ix_model_version_artifact_sha256", "model_version", ["artifact_sha256"])
    op.create_table(
        "model_alias",
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_model.id"), primary_key=True),
        sa.Column("alias", sa.String(length=64), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_version.id"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_alias_version_id", "model_alias", ["version_id"])
    op.create_table(
        "model_tag",
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_model.id"), primary_key=True),
        sa.Column("key", sa.String(length=128), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
    )
    op.create_table(
        "version_tag",
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_version.id"), primary_key=True),
        sa.Column("key", sa.String(length=128), primary_key=True),
        sa.Column("value", sa.String(), nullable=False),
    )
    op.create_table(
        "event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=True),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_event_at", "event", ["at"])
    op.create_index("ix_event_model_name", "event", ["model_name"])


def downgrade() -> None:
    for table in ("event", "version_tag", "model_tag", "model_alias", "model_version"):
        op.drop_table(table)
    op.drop_table("registered_model")
