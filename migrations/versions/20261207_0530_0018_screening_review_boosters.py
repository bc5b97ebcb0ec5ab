"""Screening review and booster intervals (issue 9; CI-22, IVK-07).

A screening that clears an earlier HARD or OVERRIDE flag waits for a prescriber's review before it
counts; the review is stamped on the screening row (it is never edited otherwise). A booster
course carries the interval its prescriber set, from which the next booster is planned.

Revision ID: 0018
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0018"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("screening_results") as batch:
        batch.add_column(sa.Column("review_status", sa.String(10), nullable=True))
        batch.add_column(sa.Column("review_cleared", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("review_reason", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("reviewed_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True))
        batch.add_column(sa.Column("reviewed_at", UtcDateTime(), nullable=True))
        batch.create_check_constraint(
            "review_status_known", "review_status IS NULL OR review_status IN ('pending', 'approved', 'rejected')"
        )
    with op.batch_alter_table("appointment_series") as batch:
        batch.add_column(sa.Column("booster_interval_days", sa.Integer(), nullable=True))
        batch.create_check_constraint(
            "booster_interval_sane", "booster_interval_days IS NULL OR booster_interval_days BETWEEN 7 AND 365"
        )


def downgrade() -> None:
    with op.batch_alter_table("appointment_series") as batch:
        batch.drop_constraint(op.f("ck_appointment_series_booster_interval_sane"), type_="check")
        batch.drop_column("booster_interval_days")
    with op.batch_alter_table("screening_results") as batch:
        batch.drop_constraint(op.f("ck_screening_results_review_status_known"), type_="check")
        for column in ("reviewed_at", "reviewed_by_id", "review_reason", "review_cleared", "review_status"):
            batch.drop_column(column)
