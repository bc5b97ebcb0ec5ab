"""Outcome measures: PHQ-9 and GAD-7 scores per course, with the item-9 safety alert.

One new table, so the upgrade is additive and safe to deploy before the code that writes it.
Scores are never edited: triggers refuse an UPDATE of anything but the safety acknowledgement,
which may be written once, and refuse a DELETE (a correction is a new row naming the one it
replaces; ``replaces_id`` is unique, so a score is corrected at most once).

The vocabularies (instruments, bands) are spelled out here rather than imported, so this revision
keeps meaning what it meant when later code changes the enums.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INSTRUMENTS = ("phq9", "gad7")
BANDS = ("minimal", "mild", "moderate", "moderately_severe", "severe")
OPEN_ALERT = "safety_alert_at IS NOT NULL AND safety_acknowledged_at IS NULL"
#: what a score is: fixed once recorded
SCORED = (
    "id",
    "patient_id",
    "series_id",
    "appointment_id",
    "instrument",
    "items",
    "total",
    "band",
    "taken_at",
    "recorded_at",
    "recorded_by_id",
    "replaces_id",
    "safety_alert_at",
)
#: the acknowledgement: written once
ACKNOWLEDGED = ("safety_acknowledged_at", "safety_acknowledged_by_id", "safety_acknowledgement_note")
EDITED = "outcome scores are never edited; record a correction that replaces the score"
REACKNOWLEDGED = "a safety alert is acknowledged once"
DELETED = "outcome scores are never deleted"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _pg_changed(columns: tuple[str, ...]) -> str:
    # json has no equality operator: compare the items as text
    def col(side: str, name: str) -> str:
        return f"{side}.{name}::text" if name == "items" else f"{side}.{name}"

    new = ", ".join(col("NEW", c) for c in columns)
    old = ", ".join(col("OLD", c) for c in columns)
    return f"({new}) IS DISTINCT FROM ({old})"


def _sqlite_changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)


_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION clinic_outcome_score_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION '{DELETED}' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF {_pg_changed(SCORED)} THEN
    RAISE EXCEPTION '{EDITED}' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.safety_acknowledged_at IS NOT NULL AND {_pg_changed(ACKNOWLEDGED)} THEN
    RAISE EXCEPTION '{REACKNOWLEDGED}' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "outcome_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("instrument", sa.String(length=8), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("band", sa.String(length=20), nullable=False),
        sa.Column("taken_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("replaces_id", sa.Integer(), nullable=True),
        sa.Column("safety_alert_at", UtcDateTime(), nullable=True),
        sa.Column("safety_acknowledged_at", UtcDateTime(), nullable=True),
        sa.Column("safety_acknowledged_by_id", sa.Integer(), nullable=True),
        sa.Column("safety_acknowledgement_note", sa.String(length=1000), nullable=True),
        sa.CheckConstraint(_in("instrument", INSTRUMENTS), name=op.f("ck_outcome_scores_instrument_known")),
        sa.CheckConstraint(_in("band", BANDS), name=op.f("ck_outcome_scores_band_known")),
        sa.CheckConstraint(
            "(instrument = 'phq9' AND total BETWEEN 0 AND 27) OR (instrument = 'gad7' AND total BETWEEN 0 AND 21)",
            name=op.f("ck_outcome_scores_total_in_range"),
        ),
        sa.CheckConstraint("replaces_id IS NULL OR replaces_id <> id", name=op.f("ck_outcome_scores_replaces_another")),
        sa.CheckConstraint(
            "safety_alert_at IS NULL OR instrument = 'phq9'", name=op.f("ck_outcome_scores_alert_on_phq9")
        ),
        sa.CheckConstraint(
            "(safety_acknowledged_at IS NULL AND safety_acknowledged_by_id IS NULL"
            " AND safety_acknowledgement_note IS NULL)"
            " OR (safety_alert_at IS NOT NULL AND safety_acknowledged_at IS NOT NULL"
            " AND safety_acknowledged_by_id IS NOT NULL AND safety_acknowledgement_note IS NOT NULL)",
            name=op.f("ck_outcome_scores_acknowledged_whole"),
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"], name=op.f("fk_outcome_scores_appointment_id_appointments")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_outcome_scores_patient_id_patients")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["users.id"], name=op.f("fk_outcome_scores_recorded_by_id_users")),
        sa.ForeignKeyConstraint(
            ["replaces_id"], ["outcome_scores.id"], name=op.f("fk_outcome_scores_replaces_id_outcome_scores")
        ),
        sa.ForeignKeyConstraint(
            ["safety_acknowledged_by_id"], ["users.id"], name=op.f("fk_outcome_scores_safety_acknowledged_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["appointment_series.id"], name=op.f("fk_outcome_scores_series_id_appointment_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome_scores")),
        sa.UniqueConstraint("replaces_id", name=op.f("uq_outcome_scores_replaces_id")),
    )
    op.create_index("ix_outcome_scores_series_taken", "outcome_scores", ["series_id", "instrument", "taken_at"])
    op.create_index("ix_outcome_scores_patient", "outcome_scores", ["patient_id"])
    op.create_index(
        "ix_outcome_scores_open_alerts",
        "outcome_scores",
        ["series_id"],
        postgresql_where=sa.text(OPEN_ALERT),
        sqlite_where=sa.text(OPEN_ALERT),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER outcome_scores_guard BEFORE UPDATE OR DELETE ON outcome_scores "
            "FOR EACH ROW EXECUTE FUNCTION clinic_outcome_score_guard()"
        )
    else:
        op.execute(
            "CREATE TRIGGER outcome_scores_never_edited BEFORE UPDATE ON outcome_scores "
            f"WHEN {_sqlite_changed(SCORED)} BEGIN SELECT RAISE(ABORT, '{EDITED}'); END"
        )
        op.execute(
            "CREATE TRIGGER outcome_scores_acknowledged_once BEFORE UPDATE ON outcome_scores "
            f"WHEN OLD.safety_acknowledged_at IS NOT NULL AND ({_sqlite_changed(ACKNOWLEDGED)}) "
            f"BEGIN SELECT RAISE(ABORT, '{REACKNOWLEDGED}'); END"
        )
        op.execute(
            "CREATE TRIGGER outcome_scores_no_delete BEFORE DELETE ON outcome_scores "
            f"BEGIN SELECT RAISE(ABORT, '{DELETED}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outcome_scores_guard ON outcome_scores")
        op.execute("DROP FUNCTION IF EXISTS clinic_outcome_score_guard()")
    else:
        for name in ("never_edited", "acknowledged_once", "no_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS outcome_scores_{name}")
    op.drop_index("ix_outcome_scores_open_alerts", table_name="outcome_scores")
    op.drop_index("ix_outcome_scores_patient", table_name="outcome_scores")
    op.drop_index("ix_outcome_scores_series_taken", table_name="outcome_scores")
    op.drop_table("outcome_scores")
