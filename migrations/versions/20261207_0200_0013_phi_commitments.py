"""Least PHI without breaking proof (issue 13; HIP-15, SYS-05).

New ledger entries hash each PHI field as a salted commitment (form 2, ``phi_salts``). Entries already
written keep their form-1 hashes (history is never rewritten, SYS-01): each gets salts for its PHI
fields in ``ledger_form1_salts``, and each chain gets one linked re-anchoring entry (an ``adjustment``
with no container and no quantity) whose ``details.reanchor`` holds a chained digest binding every
form-1 entry's hash to its committed form. An export may then leave their PHI out and still verify.

Revision ID: 0013
Revises: 0012
"""

import secrets

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime
from clinic.core.time import utcnow
from clinic.inventory.chain import GENESIS, HASHED_FIELDS, committed, entry_hash, phi_paths, record_hash, shadow_step

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

REASON = "Re-anchoring: the entries before this one bound to their salted-commitment form (migration 0013)"

_entries = sa.table(
    "ledger_entries",
    sa.column("id", sa.Integer()),
    sa.column("location_id", sa.Integer()),
    sa.column("seq", sa.BigInteger()),
    sa.column("kind", sa.String()),
    sa.column("container_id", sa.Integer()),
    sa.column("drug_id", sa.Integer()),
    sa.column("delta_ug", sa.BigInteger()),
    sa.column("balance_after_ug", sa.BigInteger()),
    sa.column("patient_id", sa.Integer()),
    sa.column("appointment_id", sa.Integer()),
    sa.column("actor_id", sa.Integer()),
    sa.column("witness_id", sa.Integer()),
    sa.column("second_witness_id", sa.Integer()),
    sa.column("corrects_seq", sa.BigInteger()),
    sa.column("occurred_at", UtcDateTime()),
    sa.column("recorded_at", UtcDateTime()),
    sa.column("reason", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
    sa.column("phi_salts", sa.JSON()),
)
_salts = sa.table(
    "ledger_form1_salts",
    sa.column("location_id", sa.Integer()),
    sa.column("seq", sa.BigInteger()),
    sa.column("salts", sa.JSON()),
)
_chains = sa.table(
    "ledger_chains",
    sa.column("location_id", sa.Integer()),
    sa.column("head_seq", sa.BigInteger()),
    sa.column("head_hash", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", recreate="never") as batch:
        batch.add_column(sa.Column("phi_salts", sa.JSON(), nullable=True))
    op.create_table(
        "ledger_form1_salts",
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("salts", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_ledger_form1_salts_location_id_locations")
        ),
        sa.PrimaryKeyConstraint("location_id", "seq", name=op.f("pk_ledger_form1_salts")),
    )
    _export_tables()
    bind = op.get_bind()
    admin = bind.execute(sa.text("SELECT min(id) FROM users WHERE role = 'admin'")).scalar()
    for location_id, head_seq, head_hash in bind.execute(
        sa.select(_chains.c.location_id, _chains.c.head_seq, _chains.c.head_hash).where(_chains.c.head_seq > 0)
    ).all():
        _reanchor(bind, location_id, head_seq, head_hash, admin)


def _export_tables() -> None:
    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("file_format", sa.String(length=5), nullable=False),
        sa.Column("profile", sa.String(length=20), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("until", UtcDateTime(), nullable=False),
        sa.Column("schedule", sa.String(length=4), nullable=True),
        sa.Column("drug_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=200), nullable=True),
        sa.Column("recipient_address", sa.String(length=500), nullable=True),
        sa.Column("purpose_kind", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=True),
        sa.Column("file_name", sa.String(length=200), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("verification", sa.String(length=300), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_exports_status_known")),
        sa.CheckConstraint(
            "purpose_kind IN ('health_oversight', 'law_enforcement', 'required_by_law', 'operations')",
            name=op.f("ck_exports_purpose_kind_known"),
        ),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_exports_drug_id_drugs")),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_exports_location_id_locations")),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"], name=op.f("fk_exports_requested_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
    )
    op.create_index("ix_exports_requested_by", "exports", ["requested_by_id", "created_at"])
    op.create_table(
        "disclosures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("export_id", sa.Integer(), nullable=False),
        sa.Column("disclosed_at", UtcDateTime(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("recipient_address", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("purpose_kind", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["export_id"], ["exports.id"], name=op.f("fk_disclosures_export_id_exports")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_disclosures_patient_id_patients")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"], name=op.f("fk_disclosures_recorded_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disclosures")),
    )
    op.create_index("ix_disclosures_patient", "disclosures", ["patient_id", "disclosed_at"])


def _reanchor(bind, location_id: int, head_seq: int, head_hash: str, admin: int | None) -> None:
    shadow, last, seq = GENESIS, None, 0
    while True:
        rows = bind.execute(
            sa.select(_entries)
            .where(_entries.c.location_id == location_id, _entries.c.seq > seq)
            .order_by(_entries.c.seq)
            .limit(2000)
        ).all()
        if not rows:
            break
        salt_rows = []
        for row in rows:
            fields = {k: getattr(row, k) for k in HASHED_FIELDS}
            salts = {path: secrets.token_hex(16) for path in phi_paths(fields)}
            if salts:
                salt_rows.append({"location_id": location_id, "seq": row.seq, "salts": salts})
            shadow = shadow_step(shadow, row.hash, record_hash(committed(fields, salts), 1))
            last, seq = row, row.seq
        if salt_rows:
            bind.execute(_salts.insert(), salt_rows)
    if last is None or last.seq != head_seq or last.hash != head_hash:
        raise RuntimeError(f"location {location_id}: the chain head is not its last entry; run `clinic ledger verify`")
    now = max(utcnow(), last.recorded_at)
    fields = {
        "location_id": location_id,
        "seq": head_seq + 1,
        "kind": "adjustment",
        "container_id": None,
        "drug_id": None,
        "delta_ug": 0,
        "balance_after_ug": None,
        "patient_id": None,
        "appointment_id": None,
        "actor_id": admin if admin is not None else last.actor_id,
        "witness_id": None,
        "second_witness_id": None,
        "corrects_seq": None,
        "occurred_at": now,
        "recorded_at": now,
        "reason": REASON,
        "details": {"reanchor": {"form": 2, "through_seq": head_seq, "shadow": shadow}},
        "prev_hash": head_hash,
        "phi_salts": {},
    }
    fields["hash"] = entry_hash(fields)
    bind.execute(_entries.insert().values(**fields))
    bind.execute(
        _chains.update()
        .where(_chains.c.location_id == location_id)
        .values(head_seq=fields["seq"], head_hash=fields["hash"])
    )


def downgrade() -> None:
    # Form-2 entries (the re-anchoring ones included) cannot be verified without their salts, and
    # the ledger is append-only: a database that has any cannot go back.
    if op.get_bind().execute(sa.text("SELECT count(*) FROM ledger_entries WHERE phi_salts IS NOT NULL")).scalar():
        raise RuntimeError("ledger entries in form 2 exist: downgrading below 0013 would break their proof")
    op.drop_index("ix_disclosures_patient", table_name="disclosures")
    op.drop_table("disclosures")
    op.drop_index("ix_exports_requested_by", table_name="exports")
    op.drop_table("exports")
    op.drop_table("ledger_form1_salts")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN phi_salts")
