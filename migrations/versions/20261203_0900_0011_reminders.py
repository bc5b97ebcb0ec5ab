"""Reminders: the outbox, per-location rules, per-channel opt-outs and the staff inbox.

New tables only; nothing existing changes, so the downgrade drops them (the outbox's history
goes with them: export it first if it matters).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("audience", sa.String(length=10), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("series_id", sa.Integer(), nullable=True),
        sa.Column("subject_type", sa.String(length=20), nullable=True),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=160), nullable=False),
        sa.Column("planned_for", UtcDateTime(), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("handed_off_at", UtcDateTime(), nullable=True),
        sa.Column("transport", sa.String(length=20), nullable=True),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("cancelled_at", UtcDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed', 'cancelled')", name="status_known"),
        sa.CheckConstraint("channel IN ('email', 'sms', 'in_app')", name="channel_known"),
        sa.CheckConstraint("audience IN ('patient', 'user', 'role')", name="audience_known"),
        sa.CheckConstraint(
            "(audience = 'patient' AND patient_id IS NOT NULL) OR (audience = 'user' AND user_id IS NOT NULL)"
            " OR (audience = 'role' AND role IS NOT NULL)",
            name="recipient_named",
        ),
        sa.CheckConstraint("attempts >= 0", name="attempts_counted"),
        sa.CheckConstraint("status <> 'sent' OR sent_at IS NOT NULL", name="sent_stamped"),
        sa.ForeignKeyConstraint(["appointment_id"], ["appointments.id"]),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"]),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.ForeignKeyConstraint(["series_id"], ["appointment_series.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index(
        "ix_reminders_waiting",
        "reminders",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_reminders_appointment", "reminders", ["appointment_id"])
    op.create_index("ix_reminders_patient_due", "reminders", ["patient_id", "due_at"])
    op.create_index("ix_reminders_subject", "reminders", ["subject_type", "subject_id"])
    op.create_index("ix_reminders_location_status", "reminders", ["location_id", "status"])

    op.create_table(
        "reminder_settings",
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"]),
        sa.ForeignKeyConstraint(["updated_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("location_id"),
    )
    op.create_table(
        "reminder_opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("channel IN ('email', 'sms')", name="channel_known"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"]),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "channel"),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reminder_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.Column("link", sa.String(length=300), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("user_id IS NOT NULL OR role IS NOT NULL", name="addressed"),
        sa.ForeignKeyConstraint(["location_id"], ["locations.id"]),
        sa.ForeignKeyConstraint(["reminder_id"], ["reminders.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reminder_id"),
    )
    op.create_index("ix_notices_user", "notices", ["user_id", "created_at"])
    op.create_index("ix_notices_role", "notices", ["role", "created_at"])
    op.create_table(
        "notice_reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("notice_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("notice_id", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("notice_reads")
    op.drop_index("ix_notices_role", table_name="notices")
    op.drop_index("ix_notices_user", table_name="notices")
    op.drop_table("notices")
    op.drop_table("reminder_opt_outs")
    op.drop_table("reminder_settings")
    for name in (
        "ix_reminders_location_status",
        "ix_reminders_subject",
        "ix_reminders_patient_due",
        "ix_reminders_appointment",
        "ix_reminders_waiting",
    ):
        op.drop_index(name, table_name="reminders")
    op.drop_table("reminders")
