"""Patients registered before memberships and never booked get a home location (issue 9, SYS-12).

0019 gave each existing patient the location of their first course; a patient registered but never
booked kept none, and a patient with no home is seen by the staff of every location. Here such a
patient belongs where their latest screening was taken, else, in a clinic with a single location,
to that one. Only a patient with neither (several locations, no screening at any) keeps none: no
record says where they belong, and an admin places them (PATCH /patients/{id} with location_id).

Revision ID: 0020
Revises: 0019s
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE patients SET location_id = (SELECT s.location_id FROM screening_results s "
            "WHERE s.patient_id = patients.id AND s.location_id IS NOT NULL ORDER BY s.id DESC LIMIT 1) "
            "WHERE location_id IS NULL"
        )
    )
    op.execute(
        sa.text(
            "UPDATE patients SET location_id = (SELECT MIN(id) FROM locations) "
            "WHERE location_id IS NULL AND (SELECT COUNT(*) FROM locations) = 1"
        )
    )


def downgrade() -> None:
    """Nothing to undo: which homes this revision set is not recorded, and each is a true one."""
