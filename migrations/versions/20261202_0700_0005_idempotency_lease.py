"""Idempotency claims carry a lease, so a key whose request died can be completed by a retry.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("lease_until", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("lease_until")
