"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Rules (STYLE.md habit 6): this revision must not break the *previous* release of the code, which
still runs during a deploy; downgrade() must really undo upgrade(); a NOT NULL column goes in two
steps (server_default first). Edit what autogenerate wrote; never commit it raw.
"""
from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
