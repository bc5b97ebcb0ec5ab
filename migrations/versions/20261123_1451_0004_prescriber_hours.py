"""Prescriber hours: when each prescriber is on site at a location.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prescriber_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_prescriber_hours_location_id_locations")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_prescriber_hours_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescriber_hours")),
        sa.UniqueConstraint("location_id", "user_id", name=op.f("uq_prescriber_hours_location_id_user_id")),
    )


def downgrade() -> None:
    op.drop_table("prescriber_hours")
