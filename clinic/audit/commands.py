"""``clinic purge KIND``: remove what is past retention (SYS-02); a refusal is recorded and exits 1."""

from __future__ import annotations

import getpass
import sys

import click
from flask.cli import with_appcontext

PURGE_KINDS = ("access-log", "audit-trail", "ledger", "inventory")


@click.command("purge")
@with_appcontext
@click.argument("kind", type=click.Choice(PURGE_KINDS))
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def purge_command(kind: str, dry_run: bool) -> None:
    """SYS-02: remove KIND's records older than retention (the logs: at least 6 years, the longest of any
    location's, none under legal hold), whole seals at a time so what is left still verifies."""
    from clinic.audit import retention
    from clinic.core.tx import commit

    who = f"cli:{getpass.getuser()}"
    if kind in retention.KINDS:
        run = retention.purge(kind, requested_by=who, dry_run=dry_run)
    else:
        run = retention.refuse_ledger(kind, requested_by=who)
    if dry_run and run.outcome == "dry_run":
        click.echo(
            f"{kind}: would remove {run.rows} rows (seals up to {run.through_seal}, cutoff {run.cutoff:%Y-%m-%d})"
        )
        return
    commit()  # a refusal is kept too
    if run.outcome == "refused":
        click.echo(f"{kind}: purge REFUSED: {run.detail}", err=True)
        sys.exit(1)
    if run.outcome == "nothing":
        click.echo(f"{kind}: nothing to purge: {run.detail}")
        return
    click.echo(f"{kind}: removed {run.rows} rows, {run.detail}")
