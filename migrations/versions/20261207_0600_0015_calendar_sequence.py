"""Calendar feeds written with the icalendar package (issue 10): an installation id that makes event
UIDs unique between installations in one subscriber's calendar, and an appointment's SEQUENCE
(RFC 5545 §3.8.7.4), raised when the visit moves or is cancelled.

Revision ID: 0015
Revises: 0012
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    installation = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_installation_single_row")),
    )
    op.bulk_insert(installation, [{"id": 1, "uid": str(uuid.uuid4())}])
    op.add_column("appointments", sa.Column("ical_sequence", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.drop_column("ical_sequence")
    op.drop_table("installation")
