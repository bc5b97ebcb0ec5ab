"""Vocabulary as types: visit states for the dosing visit, course states, loss kinds, reminder channels.

Each is a StrEnum stored by value and kept to its values by a CHECK. Appointments gain the visit
states (checked in -> dosed -> observing -> ready for discharge -> discharged); the unused
'completed' becomes 'discharged'.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

VISIT = (
    "scheduled",
    "checked_in",
    "dosed",
    "observing",
    "ready_for_discharge",
    "discharged",
    "cancelled",
    "no_show",
    "missed",
)
OLD_VISIT = ("scheduled", "checked_in", "completed", "cancelled", "no_show", "missed")
SERIES = ("active", "completed", "cancelled")
LOSS = ("theft", "loss", "breakage", "spill")
CHANNEL = ("email", "sms", "none")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.execute("UPDATE appointments SET status = 'discharged' WHERE status = 'completed'")
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_status_known"), type_="check")
        batch.alter_column("status", type_=sa.String(20), existing_type=sa.String(12))
        batch.create_check_constraint("status_known", _in("status", VISIT))
    with op.batch_alter_table("appointment_series") as batch:
        batch.alter_column("status", type_=sa.String(20), existing_type=sa.String(12))
        batch.create_check_constraint("status_known", _in("status", SERIES))
    with op.batch_alter_table("loss_reports") as batch:
        batch.create_check_constraint("kind_known", _in("kind", LOSS))
    with op.batch_alter_table("patients") as batch:
        batch.create_check_constraint("channel_known", _in("preferred_channel", CHANNEL))


def downgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        batch.drop_constraint(op.f("ck_patients_channel_known"), type_="check")
    with op.batch_alter_table("loss_reports") as batch:
        batch.drop_constraint(op.f("ck_loss_reports_kind_known"), type_="check")
    with op.batch_alter_table("appointment_series") as batch:
        batch.drop_constraint(op.f("ck_appointment_series_status_known"), type_="check")
        batch.alter_column("status", type_=sa.String(12), existing_type=sa.String(20))
    op.execute(
        "UPDATE appointments SET status = 'completed' WHERE status IN ('dosed', 'observing', 'ready_for_discharge', 'discharged')"
    )
    with op.batch_alter_table("appointments") as batch:
        batch.drop_constraint(op.f("ck_appointments_status_known"), type_="check")
        batch.alter_column("status", type_=sa.String(12), existing_type=sa.String(20))
        batch.create_check_constraint("status_known", _in("status", OLD_VISIT))
