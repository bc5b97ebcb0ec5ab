"""Ledger: locations, storage sites, drugs, containers, hash-chained entries, counts, discrepancies, loss reports, checkpoints, idempotency keys, patients.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.appendonly import protect, unprotect
from clinic.core.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The records an inspector relies on: never updated, never deleted (SYS-01, DEA-08).
APPEND_ONLY = ("ledger_entries", "ledger_checkpoints", "count_lines")


def upgrade() -> None:
    op.create_table(
        "drugs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ndc", sa.String(length=13), nullable=False),
        sa.Column("schedule", sa.String(length=4), nullable=False),
        sa.Column("form", sa.String(length=20), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("ug_per_unit", sa.BigInteger(), nullable=False),
        sa.Column("milliunits_per_container", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("form IN ('vial', 'nasal_device', 'tablet', 'troche')", name=op.f("ck_drugs_form_known")),
        sa.CheckConstraint("schedule IN ('CII', 'CIII', 'CIV', 'CV')", name=op.f("ck_drugs_schedule_known")),
        sa.CheckConstraint("unit IN ('mL', 'device', 'tablet', 'troche')", name=op.f("ck_drugs_unit_known")),
        sa.CheckConstraint("milliunits_per_container > 0", name=op.f("ck_drugs_size_positive")),
        sa.CheckConstraint("ug_per_unit > 0", name=op.f("ck_drugs_strength_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drugs")),
        sa.UniqueConstraint("ndc", name=op.f("uq_drugs_ndc")),
    )
    op.create_table(
        "locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("dea_registration", sa.String(length=9), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("jurisdiction", sa.JSON(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("rems_certified_until", sa.Date(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
        sa.UniqueConstraint("dea_registration", name=op.f("uq_locations_dea_registration")),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("content_type", sa.String(length=100), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_idempotency_keys_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("user_id", "key", name=op.f("uq_idempotency_keys_user_id_key")),
    )
    op.create_table(
        "ledger_chains",
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("has_initial_inventory", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_ledger_chains_location_id_locations")),
        sa.PrimaryKeyConstraint("location_id", name=op.f("pk_ledger_chains")),
    )
    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", UtcDateTime(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_ledger_checkpoints_location_id_locations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_checkpoints")),
        sa.UniqueConstraint("location_id", "seq", name=op.f("uq_ledger_checkpoints_location_id_seq")),
    )
    op.create_table(
        "storage_sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_storage_sites_location_id_locations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_sites")),
        sa.UniqueConstraint("location_id", "name", name=op.f("uq_storage_sites_location_id_name")),
    )
    op.create_table(
        "containers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("storage_site_id", sa.Integer(), nullable=False),
        sa.Column("drug_id", sa.Integer(), nullable=False),
        sa.Column("lot_number", sa.String(length=40), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("initial_ug", sa.BigInteger(), nullable=False),
        sa.Column("balance_ug", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('sealed', 'open', 'empty', 'expired', 'quarantined', 'disposed')",
            name=op.f("ck_containers_status_known"),
        ),
        sa.CheckConstraint("balance_ug <= initial_ug", name=op.f("ck_containers_balance_within_initial")),
        sa.CheckConstraint("balance_ug >= 0", name=op.f("ck_containers_balance_not_negative")),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_containers_drug_id_drugs")),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_containers_location_id_locations")),
        sa.ForeignKeyConstraint(
            ["storage_site_id"], ["storage_sites.id"], name=op.f("fk_containers_storage_site_id_storage_sites")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_containers")),
    )
    op.create_index("ix_containers_location_status", "containers", ["location_id", "status"])

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=True),
        sa.Column("drug_id", sa.Integer(), nullable=True),
        sa.Column("delta_ug", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_ug", sa.BigInteger(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=True),
        sa.Column("second_witness_id", sa.Integer(), nullable=True),
        sa.Column("corrects_seq", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "kind IN ('initial_inventory', 'receipt', 'administration', 'waste', 'transfer', 'return_to_distributor', 'destruction', 'loss', 'count', 'adjustment', 'correction')",
            name=op.f("ck_ledger_entries_kind_known"),
        ),
        sa.CheckConstraint(
            "balance_after_ug IS NULL OR balance_after_ug >= 0",
            name=op.f("ck_ledger_entries_balance_after_not_negative"),
        ),
        sa.CheckConstraint(
            "second_witness_id IS NULL OR second_witness_id <> actor_id",
            name=op.f("ck_ledger_entries_second_witness_not_actor"),
        ),
        sa.CheckConstraint(
            "witness_id IS NULL OR witness_id <> actor_id", name=op.f("ck_ledger_entries_witness_not_actor")
        ),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_ledger_entries_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_ledger_entries_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_ledger_entries_drug_id_drugs")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_ledger_entries_location_id_locations")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_ledger_entries_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["second_witness_id"], ["users.id"], name=op.f("fk_ledger_entries_second_witness_id_users")
        ),
        sa.ForeignKeyConstraint(["witness_id"], ["users.id"], name=op.f("fk_ledger_entries_witness_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
        sa.UniqueConstraint("hash", name=op.f("uq_ledger_entries_hash")),
        sa.UniqueConstraint("location_id", "prev_hash", name=op.f("uq_ledger_entries_location_id_prev_hash")),
        sa.UniqueConstraint("location_id", "seq", name=op.f("uq_ledger_entries_location_id_seq")),
    )
    op.create_index("ix_ledger_entries_container", "ledger_entries", ["container_id", "seq"])
    op.create_index("ix_ledger_entries_kind", "ledger_entries", ["location_id", "kind", "seq"])
    op.create_index("ix_ledger_entries_location_occurred", "ledger_entries", ["location_id", "occurred_at"])

    op.create_table(
        "counts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("business_hours", sa.String(length=8), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('shift', 'initial', 'biennial')", name=op.f("ck_counts_kind_known")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_counts_actor_id_users")),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"], name=op.f("fk_counts_entry_id_ledger_entries")),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_counts_location_id_locations")),
        sa.ForeignKeyConstraint(["witness_id"], ["users.id"], name=op.f("fk_counts_witness_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_counts")),
    )
    op.create_table(
        "loss_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("discovered_at", UtcDateTime(), nullable=False),
        sa.Column("notice_due_at", UtcDateTime(), nullable=False),
        sa.Column("filing_due_on", sa.Date(), nullable=False),
        sa.Column("notified_at", UtcDateTime(), nullable=True),
        sa.Column("filed_at", UtcDateTime(), nullable=True),
        sa.Column("form", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_loss_reports_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_loss_reports_location_id_locations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loss_reports")),
    )
    op.create_table(
        "count_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("count_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("expected_ug", sa.BigInteger(), nullable=False),
        sa.Column("counted_ug", sa.BigInteger(), nullable=False),
        sa.Column("is_exact", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_count_lines_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["count_id"], ["counts.id"], name=op.f("fk_count_lines_count_id_counts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_count_lines")),
        sa.UniqueConstraint("count_id", "container_id", name=op.f("uq_count_lines_count_id_container_id")),
    )
    op.create_table(
        "discrepancies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("count_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("expected_ug", sa.BigInteger(), nullable=False),
        sa.Column("counted_ug", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("resolution", sa.String(length=1000), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('open', 'explained', 'adjusted', 'escalated')", name=op.f("ck_discrepancies_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_discrepancies_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["count_id"], ["counts.id"], name=op.f("fk_discrepancies_count_id_counts")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entries.id"], name=op.f("fk_discrepancies_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_discrepancies_location_id_locations")),
        sa.ForeignKeyConstraint(["resolved_by_id"], ["users.id"], name=op.f("fk_discrepancies_resolved_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancies")),
    )
    op.create_index("ix_discrepancies_location_status", "discrepancies", ["location_id", "status"])

    for table in APPEND_ONLY:
        protect(table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        unprotect(table)
    op.drop_index("ix_discrepancies_location_status", table_name="discrepancies")

    op.drop_table("discrepancies")
    op.drop_table("count_lines")
    op.drop_table("loss_reports")
    op.drop_table("counts")
    op.drop_index("ix_ledger_entries_location_occurred", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_kind", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_container", table_name="ledger_entries")

    op.drop_table("ledger_entries")
    op.drop_index("ix_containers_location_status", table_name="containers")

    op.drop_table("containers")
    op.drop_table("storage_sites")
    op.drop_table("ledger_checkpoints")
    op.drop_table("ledger_chains")
    op.drop_table("idempotency_keys")
    op.drop_table("patients")
    op.drop_table("locations")
    op.drop_table("drugs")
