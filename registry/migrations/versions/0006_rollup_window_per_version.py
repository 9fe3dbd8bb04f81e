"""Metric rollups are keyed by version too: two versions serving in one window keep a row each.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metric_rollup") as batch:
        batch.drop_constraint("uq_rollup_window", type_="unique")
        batch.create_unique_constraint(
            "uq_rollup_window_version", ["deployment", "resolution", "at", "version"]
        )


def downgrade() -> None:
    # Keeps one row per window (the busiest version's) so the narrower key holds again.
    op.execute(
        "DELETE FROM metric_rollup WHERE id NOT IN ("
        " SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY deployment, resolution, at"
        " ORDER BY requests DESC, id) AS n FROM metric_rollup) AS ranked WHERE n = 1)"
    )
    with op.batch_alter_table("metric_rollup") as batch:
        batch.drop_constraint("uq_rollup_window_version", type_="unique")
        batch.create_unique_constraint("uq_rollup_window", ["deployment", "resolution", "at"])
