"""Staff belong to locations (issue 9, SYS-11..13): memberships, the location a member of several
last chose, and a patient's home location.

So that nothing breaks on upgrade, every existing non-admin user becomes a member of every existing
location (an admin narrows it afterwards), and each existing patient's home is the location of their
first course (patients never booked keep none until someone registers them at one).

Revision ID: 0019
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "location_members",
        sa.Column("location_id", sa.Integer(), sa.ForeignKey("locations.id"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("granted_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("granted_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_location_members_user", "location_members", ["user_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("current_location_id", sa.Integer(), sa.ForeignKey("locations.id"), nullable=True))
    with op.batch_alter_table("patients") as batch:
        batch.add_column(sa.Column("location_id", sa.Integer(), sa.ForeignKey("locations.id"), nullable=True))
    op.create_index("ix_patients_location", "patients", ["location_id"])
    op.execute(
        sa.text(
            "INSERT INTO location_members (location_id, user_id, granted_at) "
            "SELECT l.id, u.id, CURRENT_TIMESTAMP FROM locations l CROSS JOIN users u WHERE u.role <> 'admin'"
        )
    )
    op.execute(
        sa.text(
            "UPDATE patients SET location_id = (SELECT s.location_id FROM appointment_series s "
            "WHERE s.patient_id = patients.id ORDER BY s.id LIMIT 1)"
        )
    )


def downgrade() -> None:
    op.drop_index("ix_patients_location", table_name="patients")
    with op.batch_alter_table("patients") as batch:
        batch.drop_column("location_id")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("current_location_id")
    op.drop_index("ix_location_members_user", table_name="location_members")
    op.drop_table("location_members")
