"""The dosing visit: visits, their stamped steps, vital signs, doses per container, and the
observation alerts the sweeper raises (due times as rows, SYS-06).

Only new tables: the previous release ignores them.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("checked_in_at", UtcDateTime(), nullable=False),
        sa.Column("checked_in_by_id", sa.Integer(), nullable=False),
        sa.Column("ride_home_arranged", sa.Boolean(), nullable=False),
        sa.Column("ride_contact", sa.String(length=200), nullable=True),
        sa.Column("preparation", sa.JSON(), nullable=False),
        sa.Column("screening_id", sa.Integer(), nullable=True),
        sa.Column("symptoms_worsened", sa.Boolean(), nullable=True),
        sa.Column("hold_released_at", UtcDateTime(), nullable=True),
        sa.Column("hold_released_by_id", sa.Integer(), nullable=True),
        sa.Column("hold_released_through_id", sa.Integer(), nullable=True),
        sa.Column("hold_release_reason", sa.String(length=1000), nullable=True),
        sa.Column("ordered_ug", sa.BigInteger(), nullable=True),
        sa.Column("ordered_by_id", sa.Integer(), nullable=True),
        sa.Column("ordered_at", UtcDateTime(), nullable=True),
        sa.Column("order_reason", sa.String(length=1000), nullable=True),
        sa.Column("dose_ug", sa.BigInteger(), nullable=True),
        sa.Column("dosed_by_id", sa.Integer(), nullable=True),
        sa.Column("dose_started_at", UtcDateTime(), nullable=True),
        sa.Column("dose_ended_at", UtcDateTime(), nullable=True),
        sa.Column("duration_reason", sa.String(length=1000), nullable=True),
        sa.Column("earliest_discharge_at", UtcDateTime(), nullable=True),
        sa.Column("ready_at", UtcDateTime(), nullable=True),
        sa.Column("ready_by_id", sa.Integer(), nullable=True),
        sa.Column("discharged_at", UtcDateTime(), nullable=True),
        sa.Column("discharged_by_id", sa.Integer(), nullable=True),
        sa.Column("early_discharge_reason", sa.String(length=1000), nullable=True),
        sa.Column("discharge_checks", sa.JSON(), nullable=True),
        sa.Column("pmf_reference", sa.String(length=100), nullable=True),
        sa.Column("pmf_submitted_at", UtcDateTime(), nullable=True),
        sa.Column("pmf_submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "discharged_at IS NULL OR discharged_at >= checked_in_at", name=op.f("ck_visits_discharge_ordered")
        ),
        sa.CheckConstraint(
            "dose_ended_at IS NULL OR dose_ended_at >= dose_started_at", name=op.f("ck_visits_dose_ordered")
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name=op.f("fk_visits_appointment_id_appointments")
        ),
        sa.ForeignKeyConstraint(["checked_in_by_id"], ["users.id"], name=op.f("fk_visits_checked_in_by_id_users")),
        sa.ForeignKeyConstraint(["discharged_by_id"], ["users.id"], name=op.f("fk_visits_discharged_by_id_users")),
        sa.ForeignKeyConstraint(["dosed_by_id"], ["users.id"], name=op.f("fk_visits_dosed_by_id_users")),
        sa.ForeignKeyConstraint(
            ["hold_released_by_id"], ["users.id"], name=op.f("fk_visits_hold_released_by_id_users")
        ),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_visits_location_id_locations")),
        sa.ForeignKeyConstraint(["ordered_by_id"], ["users.id"], name=op.f("fk_visits_ordered_by_id_users")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_visits_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["pmf_submitted_by_id"], ["users.id"], name=op.f("fk_visits_pmf_submitted_by_id_users")
        ),
        sa.ForeignKeyConstraint(["protocol_id"], ["protocols.id"], name=op.f("fk_visits_protocol_id_protocols")),
        sa.ForeignKeyConstraint(["ready_by_id"], ["users.id"], name=op.f("fk_visits_ready_by_id_users")),
        sa.ForeignKeyConstraint(
            ["screening_id"], ["screening_results.id"], name=op.f("fk_visits_screening_id_screening_results")
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["appointment_series.id"], name=op.f("fk_visits_series_id_appointment_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_visits_appointment_id")),
    )
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index("ix_visits_location_open", ["location_id", "closed"], unique=False)

    op.create_table(
        "observation_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("checkpoint", sa.Integer(), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("raised_at", UtcDateTime(), nullable=True),
        sa.Column("satisfied_at", UtcDateTime(), nullable=True),
        sa.Column("satisfied_late", sa.Boolean(), nullable=False),
        sa.Column("cancelled_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('vitals_due', 'vitals_overdue', 'observation_complete', 'pmf_overdue', 'infusion_overdue')",
            name=op.f("ck_observation_alerts_kind_known"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_observation_alerts_location_id_locations")
        ),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_observation_alerts_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_observation_alerts")),
        sa.UniqueConstraint(
            "visit_id", "kind", "checkpoint", name=op.f("uq_observation_alerts_visit_id_kind_checkpoint")
        ),
    )
    with op.batch_alter_table("observation_alerts", schema=None) as batch_op:
        batch_op.create_index("ix_observation_alerts_location", ["location_id", "raised_at"], unique=False)
        batch_op.create_index("ix_observation_alerts_pending", ["due_at", "raised_at"], unique=False)

    op.create_table(
        "visit_doses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("container_id", sa.Integer(), nullable=False),
        sa.Column("administered_at", UtcDateTime(), nullable=False),
        sa.Column("drawn_ug", sa.BigInteger(), nullable=False),
        sa.Column("administered_ug", sa.BigInteger(), nullable=False),
        sa.Column("wasted_ug", sa.BigInteger(), nullable=False),
        sa.Column("administration_entry_id", sa.Integer(), nullable=False),
        sa.Column("waste_entry_id", sa.Integer(), nullable=True),
        sa.Column("remainder_action", sa.String(length=10), nullable=True),
        sa.Column("remainder_ug", sa.BigInteger(), nullable=True),
        sa.Column("remainder_entry_id", sa.Integer(), nullable=True),
        sa.Column("remainder_at", UtcDateTime(), nullable=True),
        sa.Column("remainder_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "remainder_action IS NULL OR remainder_action IN ('wasted', 'returned')",
            name=op.f("ck_visit_doses_remainder_known"),
        ),
        sa.CheckConstraint(
            "administered_ug > 0 AND wasted_ug >= 0 AND drawn_ug = administered_ug + wasted_ug",
            name=op.f("ck_visit_doses_sums"),
        ),
        sa.ForeignKeyConstraint(
            ["administration_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_visit_doses_administration_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["container_id"], ["containers.id"], name=op.f("fk_visit_doses_container_id_containers")
        ),
        sa.ForeignKeyConstraint(["remainder_by_id"], ["users.id"], name=op.f("fk_visit_doses_remainder_by_id_users")),
        sa.ForeignKeyConstraint(
            ["remainder_entry_id"], ["ledger_entries.id"], name=op.f("fk_visit_doses_remainder_entry_id_ledger_entries")
        ),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_visit_doses_visit_id_visits")),
        sa.ForeignKeyConstraint(
            ["waste_entry_id"], ["ledger_entries.id"], name=op.f("fk_visit_doses_waste_entry_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_doses")),
        sa.UniqueConstraint("visit_id", "container_id", name=op.f("uq_visit_doses_visit_id_container_id")),
    )
    with op.batch_alter_table("visit_doses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_doses_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "visit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=False),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_visit_events_actor_id_users")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_visit_events_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_events")),
    )
    with op.batch_alter_table("visit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_events_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "vital_signs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("taken_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("systolic", sa.Integer(), nullable=False),
        sa.Column("diastolic", sa.Integer(), nullable=False),
        sa.Column("heart_rate", sa.Integer(), nullable=False),
        sa.Column("spo2", sa.Integer(), nullable=True),
        sa.Column("respiratory_rate", sa.Integer(), nullable=True),
        sa.Column("sedation", sa.Integer(), nullable=True),
        sa.Column("dissociation", sa.Integer(), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("minutes_after_dose", sa.Integer(), nullable=True),
        sa.Column("checkpoints", sa.JSON(), nullable=False),
        sa.Column("late_for", sa.JSON(), nullable=False),
        sa.Column("out_of_range", sa.JSON(), nullable=False),
        sa.CheckConstraint("sedation IS NULL OR sedation BETWEEN 0 AND 5", name=op.f("ck_vital_signs_moaas_scale")),
        sa.CheckConstraint(
            "systolic BETWEEN 40 AND 300 AND diastolic BETWEEN 20 AND 200", name=op.f("ck_vital_signs_bp_plausible")
        ),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"], name=op.f("fk_vital_signs_recorded_by_id_users")),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_vital_signs_visit_id_visits")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vital_signs")),
    )
    with op.batch_alter_table("vital_signs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vital_signs_visit_id"), ["visit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vital_signs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vital_signs_visit_id"))

    op.drop_table("vital_signs")
    with op.batch_alter_table("visit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_events_visit_id"))

    op.drop_table("visit_events")
    with op.batch_alter_table("visit_doses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_doses_visit_id"))

    op.drop_table("visit_doses")
    with op.batch_alter_table("observation_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_observation_alerts_pending")
        batch_op.drop_index("ix_observation_alerts_location")

    op.drop_table("observation_alerts")
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index("ix_visits_location_open")

    op.drop_table("visits")
