"""``clinic purge ledger``: a location's oldest entries past retention go, and what is left still
proves itself (SYS-02, DEA-08, SYS-05).

- ``purges.location_id``: the ledger's purge is one location's; its open row (only inside the purging
  transaction) lets the database's guard delete that chain's entries up to seq ``through_id``.
- ``ledger_anchors``: where a purged chain starts again: the hash of the last entry removed and the
  chain's facts at that seq, signed. Append-only.
- ``ledger_entries``: the blanket DELETE refusal becomes the retention guard (clinic.core.retention):
  an entry younger than its location's retention (at least 2 years), or under legal hold, or not
  covered by an open purge, is deleted by no path. UPDATE and TRUNCATE stay refused.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.appendonly import protect, unprotect
from clinic.core.db import UtcDateTime
from clinic.core.retention import guard_ledger, unguard_ledger

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("purges", recreate="never") as batch:
        batch.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
    op.create_table(
        "ledger_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("purge_id", sa.Integer(), nullable=False),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("cutoff", UtcDateTime(), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_ledger_anchors_location_id_locations")
        ),
        sa.ForeignKeyConstraint(["purge_id"], ["purges.id"], name=op.f("fk_ledger_anchors_purge_id_purges")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_anchors")),
        sa.UniqueConstraint("location_id", "through_seq", name=op.f("uq_ledger_anchors_location_id_through_seq")),
    )
    protect("ledger_anchors")
    guard_ledger()


def downgrade() -> None:
    # a purged chain starts at its anchor: the revisions before this one cannot verify it
    if op.get_bind().execute(sa.text("SELECT count(*) FROM ledger_anchors")).scalar():
        raise RuntimeError("ledger entries have been purged (ledger_anchors): 0022 cannot be downgraded")
    unguard_ledger()
    unprotect("ledger_anchors")
    op.drop_table("ledger_anchors")
    with op.batch_alter_table("purges", recreate="never") as batch:
        batch.drop_column("location_id")
