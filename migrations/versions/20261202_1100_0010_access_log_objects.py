"""The access log names every object a request touched: access_events.object becomes unbounded text.

It was 200 characters and the app cut longer lists, so a receipt of many containers logged only its
first dozen ledger entries. On PostgreSQL varchar to text is a catalogue change (no rewrite, no row
trigger fires). SQLite rebuilds the table, and a rebuilt table loses its triggers, so its
append-only triggers are dropped first and made again after.

The downgrade refuses while any row names more than 200 characters of objects: going back would
have to cut audit records, which an append-only log must not do.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.appendonly import protect, unprotect

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "access_events"


def _alter(old: sa.types.TypeEngine, new: sa.types.TypeEngine) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        unprotect(TABLE)
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("object", type_=new, existing_type=old, existing_nullable=False)
    if sqlite:
        protect(TABLE)


def upgrade() -> None:
    _alter(sa.String(length=200), sa.Text())


def downgrade() -> None:
    longest = op.get_bind().execute(sa.text(f"SELECT max(length(object)) FROM {TABLE}")).scalar()
    if longest is not None and longest > 200:
        raise RuntimeError(
            f"{TABLE}.object holds up to {longest} characters; back to 200 would cut audit records. "
            "Export the access log first and decide with the compliance officer."
        )
    _alter(sa.Text(), sa.String(length=200))
