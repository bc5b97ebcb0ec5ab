"""An open ``purges`` row is never committed (SYS-02, DEA-08).

The retention guards of ``access_events``, ``audit_events`` (0014) and ``ledger_entries`` (0022)
let a transaction delete rows past retention under an open ``purges`` row, which only the purging
transaction (``clinic purge``) was to see: nothing kept one from being committed open, after
which any session could delete those rows without the purge (for the ledger: without an anchor).
On PostgreSQL a deferred constraint trigger now re-reads every row written open at COMMIT and
refuses the commit if it is still open (clinic.core.retention.close_purges). SQLite has no
deferred triggers: there file permissions are the control.

Revision ID: 0023p
Revises: 0022
"""

from clinic.core.retention import close_purges, unclose_purges

revision = "0023p"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    close_purges()


def downgrade() -> None:
    unclose_purges()
