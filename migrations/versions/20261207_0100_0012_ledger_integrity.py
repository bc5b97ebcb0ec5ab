"""Ledger integrity and the DEA record rules (issue 8; SYS-05, DEA-35, DEA-37).

On PostgreSQL a container's balance can change only together with a ledger entry that books it: a
deferred constraint trigger checks, at commit, that every inserted or re-balanced container holds
exactly its latest entry's ``balance_after_ug``. The app role owns nothing, so it cannot drop or
disable the trigger (RELIABILITY F6). On SQLite file permissions are the control, and
``clinic ledger verify`` compares every stored balance with the chain on both backends.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from clinic.core.db import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BALANCE_FUNCTION = """
CREATE OR REPLACE FUNCTION clinic_container_balance_is_booked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  stored bigint;
  booked bigint;
BEGIN
  SELECT balance_ug INTO stored FROM containers WHERE id = NEW.id;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  SELECT balance_after_ug INTO booked FROM ledger_entries
    WHERE container_id = NEW.id ORDER BY seq DESC LIMIT 1;
  IF stored IS DISTINCT FROM COALESCE(booked, 0) THEN
    RAISE EXCEPTION 'container %: balance % ug is not its ledger balance % ug', NEW.id, stored, COALESCE(booked, 0)
      USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NULL;
END $$;
"""


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "discrepancy_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=False),
        sa.Column("raised_at", UtcDateTime(), nullable=False),
        sa.Column("discrepancy_ids", sa.JSON(), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('reported', 'not_significant')",
            name=op.f("ck_discrepancy_alerts_decision_known"),
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_discrepancy_alerts_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"], ["users.id"], name=op.f("fk_discrepancy_alerts_resolved_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discrepancy_alerts")),
    )
    op.create_index("ix_discrepancy_alerts_location", "discrepancy_alerts", ["location_id", "resolved_at"])
    with op.batch_alter_table("ledger_chains") as batch:
        batch.add_column(sa.Column("initial_inventory_at", UtcDateTime(), nullable=True))
    op.execute(
        "UPDATE ledger_chains SET initial_inventory_at = (SELECT e.occurred_at FROM ledger_entries e "
        "WHERE e.location_id = ledger_chains.location_id AND e.kind = 'initial_inventory')"
    )
    with op.batch_alter_table("loss_reports") as batch:
        batch.add_column(sa.Column("board_notice_due_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("board_notified_at", UtcDateTime(), nullable=True))
    if _postgresql():
        op.execute(_BALANCE_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER containers_balance_is_booked AFTER INSERT OR UPDATE OF balance_ug "
            "ON containers DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "EXECUTE FUNCTION clinic_container_balance_is_booked()"
        )


def downgrade() -> None:
    if _postgresql():
        op.execute("DROP TRIGGER IF EXISTS containers_balance_is_booked ON containers")
        op.execute("DROP FUNCTION IF EXISTS clinic_container_balance_is_booked()")
    with op.batch_alter_table("loss_reports") as batch:
        batch.drop_column("board_notified_at")
        batch.drop_column("board_notice_due_on")
    with op.batch_alter_table("ledger_chains") as batch:
        batch.drop_column("initial_inventory_at")
    op.drop_index("ix_discrepancy_alerts_location", table_name="discrepancy_alerts")
    op.drop_table("discrepancy_alerts")
