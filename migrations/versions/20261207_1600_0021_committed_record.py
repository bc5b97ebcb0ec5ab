"""Each new ledger entry keeps its committed record, the text its hash covers (issue 13).

``ledger_entries.committed_record``: form 2's committed record (PHI slots as their salted
commitments), exactly the bytes ``verifier.canonical(committed(fields, salts), 2)`` hashes,
written by the append in the same statement as the rest of the entry. A CSV export's COPY then
sends it as it is instead of rebuilding it in SQL for every row (the canonical JSON and a SHA-256
per PHI slot were most of the export's time), and ``clinic ledger verify`` names a stored record
that is not the one its columns give.

Entries written before this revision keep NULL: the append-only ledger is never rewritten, and
the export still builds their record from the columns, byte for byte the same; a partial index
finds them (``ix_ledger_entries_no_record``), so the export rebuilds only there.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable, no default: PostgreSQL adds it without rewriting the table (no row is touched, so
    # the append-only triggers, which fire on UPDATE, have nothing to refuse)
    with op.batch_alter_table("ledger_entries", recreate="never") as batch:
        batch.add_column(sa.Column("committed_record", sa.Text(), nullable=True))
    # the entries an export still has to rebuild the record of: every entry so far, none from now on
    # (an append never enters it)
    op.create_index(
        "ix_ledger_entries_no_record",
        "ledger_entries",
        ["location_id", "seq"],
        postgresql_where=sa.text("committed_record IS NULL"),
        sqlite_where=sa.text("committed_record IS NULL"),
    )


def downgrade() -> None:
    # the column is a copy of what the other columns give (the integrity check proves it): dropping
    # it loses nothing an export or a verification needs
    op.drop_index("ix_ledger_entries_no_record", table_name="ledger_entries")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN committed_record")
