"""Scheduling: patient details, weights, REMS enrolment, screenings, protocols, chairs, closures, series, appointments and their slots, calendar feeds.

Revision ID: 0003
Revises: 0002
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime
from clinic.scheduling.protocols import SEED

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "protocols",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_protocols")),
        sa.UniqueConstraint("code", "version", name=op.f("uq_protocols_code_version")),
    )
    op.create_table(
        "appointment_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("prescriber_id", sa.Integer(), nullable=False),
        sa.Column("protocol_id", sa.Integer(), nullable=False),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("preferred_time", sa.Time(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_appointment_series_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_appointment_series_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_appointment_series_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["prescriber_id"], ["users.id"], name=op.f("fk_appointment_series_prescriber_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["protocol_id"], ["protocols.id"], name=op.f("fk_appointment_series_protocol_id_protocols")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_series")),
    )
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint("(patient_id IS NULL) <> (user_id IS NULL)", name=op.f("ck_calendar_feeds_one_owner")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_calendar_feeds_patient_id_patients")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_calendar_feeds_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
    )
    op.create_table(
        "chairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_chairs_location_id_locations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chairs")),
        sa.UniqueConstraint("location_id", "name", name=op.f("uq_chairs_location_id_name")),
    )
    op.create_table(
        "closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.CheckConstraint("ends_on >= starts_on", name=op.f("ck_closures_ordered")),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_closures_location_id_locations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_closures")),
    )
    op.create_table(
        "patient_weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("weight_g", sa.Integer(), nullable=False),
        sa.Column("measured_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("weight_g BETWEEN 2000 AND 400000", name=op.f("ck_patient_weights_weight_plausible")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_patient_weights_patient_id_patients")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"], name=op.f("fk_patient_weights_recorded_by_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_weights")),
    )
    op.create_index("ix_patient_weights_patient_measured", "patient_weights", ["patient_id", "measured_at"])

    op.create_table(
        "rems_enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("enrolled_on", sa.Date(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_rems_enrollments_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_rems_enrollments_recorded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rems_enrollments")),
    )
    op.create_table(
        "screening_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("eligibility", sa.String(length=12), nullable=False),
        sa.Column("screened_by_id", sa.Integer(), nullable=False),
        sa.Column("screened_at", UtcDateTime(), nullable=False),
        sa.Column("override_reason", sa.String(length=1000), nullable=True),
        sa.Column("overridden_by_id", sa.Integer(), nullable=True),
        sa.Column("overridden_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint(
            "eligibility IN ('eligible', 'review', 'ineligible')", name=op.f("ck_screening_results_eligibility_known")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_screening_results_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["overridden_by_id"], ["users.id"], name=op.f("fk_screening_results_overridden_by_id_users")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_screening_results_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["screened_by_id"], ["users.id"], name=op.f("fk_screening_results_screened_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening_results")),
    )
    op.create_index("ix_screening_results_patient", "screening_results", ["patient_id", "screened_at"])

    op.create_table(
        "appointments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=20), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("chair_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=False),
        sa.Column("ends_at", UtcDateTime(), nullable=False),
        sa.Column("planned_dose_mg", sa.String(length=12), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'checked_in', 'completed', 'cancelled', 'no_show', 'missed')",
            name=op.f("ck_appointments_status_known"),
        ),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_appointments_ordered")),
        sa.ForeignKeyConstraint(["chair_id"], ["chairs.id"], name=op.f("fk_appointments_chair_id_chairs")),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"], name=op.f("fk_appointments_location_id_locations")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_appointments_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["series_id"], ["appointment_series.id"], name=op.f("fk_appointments_series_id_appointment_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
        sa.UniqueConstraint("series_id", "seq", name=op.f("uq_appointments_series_id_seq")),
    )
    op.create_index("ix_appointments_location_starts", "appointments", ["location_id", "starts_at"])
    op.create_index("ix_appointments_patient_starts", "appointments", ["patient_id", "starts_at"])

    op.create_table(
        "appointment_slots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("chair_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("slot_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name=op.f("fk_appointment_slots_appointment_id_appointments")
        ),
        sa.ForeignKeyConstraint(["chair_id"], ["chairs.id"], name=op.f("fk_appointment_slots_chair_id_chairs")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_appointment_slots_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_slots")),
        sa.UniqueConstraint("chair_id", "slot_at", name=op.f("uq_appointment_slots_chair_id_slot_at")),
        sa.UniqueConstraint("patient_id", "slot_at", name=op.f("uq_appointment_slots_patient_id_slot_at")),
    )
    op.create_index("ix_appointment_slots_appointment", "appointment_slots", ["appointment_id"])

    with op.batch_alter_table("patients") as batch_op:
        batch_op.add_column(sa.Column("sex", sa.String(length=1), nullable=True))
        batch_op.add_column(sa.Column("preferred_channel", sa.String(length=8), server_default="email", nullable=False))
        batch_op.add_column(sa.Column("reminders_opt_out", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("emergency_contact", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("ride_contact", sa.String(length=200), nullable=True))

    # The protocol catalog, version 1 (data as of this revision; later versions come as new rows).
    protocols = sa.table(
        "protocols",
        sa.column("code", sa.String),
        sa.column("version", sa.Integer),
        sa.column("name", sa.String),
        sa.column("rules", sa.JSON),
        sa.column("is_current", sa.Boolean),
        sa.column("created_at", UtcDateTime()),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        protocols,
        [
            {
                "code": p["code"],
                "version": 1,
                "name": p["name"],
                "rules": p["rules"],
                "is_current": True,
                "created_at": now,
            }
            for p in SEED
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch_op:
        for column in ("ride_contact", "emergency_contact", "reminders_opt_out", "preferred_channel", "sex"):
            batch_op.drop_column(column)

    op.drop_index("ix_appointment_slots_appointment", table_name="appointment_slots")

    op.drop_table("appointment_slots")
    op.drop_index("ix_appointments_patient_starts", table_name="appointments")
    op.drop_index("ix_appointments_location_starts", table_name="appointments")

    op.drop_table("appointments")
    op.drop_index("ix_screening_results_patient", table_name="screening_results")

    op.drop_table("screening_results")
    op.drop_table("rems_enrollments")
    op.drop_index("ix_patient_weights_patient_measured", table_name="patient_weights")

    op.drop_table("patient_weights")
    op.drop_table("closures")
    op.drop_table("chairs")
    op.drop_table("calendar_feeds")
    op.drop_table("appointment_series")
    op.drop_table("protocols")
