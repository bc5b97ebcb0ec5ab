"""Sealed access log and audit trail, integrity check results, and the retention guard (issue 13).

- ``log_seals``: signed checkpoints over ranges of access-log and audit-trail rows (SYS-05, HIP-04);
  append-only.
- ``purges``: every run of ``clinic purge``, done or refused (SYS-02); the database's retention
  guard reads its open row (clinic.core.retention).
- ``integrity_checks``: the daily check's results.

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.appendonly import protect, unprotect
from clinic.core.db import UtcDateTime
from clinic.core.retention import guard, unguard

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_seals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=10), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("last_occurred_at", UtcDateTime(), nullable=False),
        sa.Column("sealed_at", UtcDateTime(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.CheckConstraint("stream IN ('access', 'audit')", name=op.f("ck_log_seals_stream_known")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_seals")),
        sa.UniqueConstraint("stream", "seq", name=op.f("uq_log_seals_stream_seq")),
    )
    protect("log_seals")
    op.create_table(
        "purges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=20), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("cutoff", UtcDateTime(), nullable=False),
        sa.Column("through_id", sa.BigInteger(), nullable=False),
        sa.Column("through_seal", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("signature", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purges")),
    )
    op.create_index("ix_purges_stream", "purges", ["stream", "open"])
    op.create_table(
        "integrity_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrity_checks")),
    )
    op.create_index("ix_integrity_checks_checked_at", "integrity_checks", ["checked_at"])
    guard()


def downgrade() -> None:
    unguard()
    op.drop_index("ix_integrity_checks_checked_at", table_name="integrity_checks")
    op.drop_table("integrity_checks")
    op.drop_index("ix_purges_stream", table_name="purges")
    op.drop_table("purges")
    unprotect("log_seals")
    op.drop_table("log_seals")
