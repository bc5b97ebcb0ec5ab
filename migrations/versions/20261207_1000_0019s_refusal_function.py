"""``clinic_refuse(rule)``: a rule checked inside a statement refuses it with an error (issue 7, speed).

The ledger's append on PostgreSQL can travel in the same message as the unit of work's COMMIT; its
DEA-06 check ("not before the container's previous movement") must then stop the whole message rather
than insert nothing, so it calls this function, which raises ``check_violation`` with the message
``clinic refused: <rule>`` (clinic.inventory.ledger turns that back into the rule's 422). A function,
not an expression that fails, so the planner never evaluates it ahead of the condition. Executable by
every role (PostgreSQL's default for functions), the app's included. Nothing on SQLite.

Revision ID: 0019s
Revises: 0019
"""

from alembic import op

revision = "0019s"
down_revision = "0019"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE OR REPLACE FUNCTION clinic_refuse(rule text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'check_violation', MESSAGE = 'clinic refused: ' || rule;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS clinic_refuse(text)")
