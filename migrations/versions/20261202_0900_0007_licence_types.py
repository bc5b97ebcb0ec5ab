"""Licences recorded with a number and no type take the role's usual type, as new ones do.

Before 0007 a nurse created with only --license-number had no licence type and so could not
witness. Nurses become RN and prescribers MD; other roles have no usual licence and are left as
they are (the users page shows they cannot witness).

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for role, licence in (("nurse", "RN"), ("prescriber", "MD")):
        op.execute(
            f"UPDATE users SET license_type = '{licence}' "
            f"WHERE role = '{role}' AND license_number IS NOT NULL AND license_type IS NULL"
        )


def downgrade() -> None:
    pass  # which types were filled in is not recorded; they stay (a type is never wrong to keep)
