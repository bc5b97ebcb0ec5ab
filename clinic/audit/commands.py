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
@click.option("--location", "location_id", type=int, help="ledger: this location only (default: every location).")
def purge_command(kind: str, dry_run: bool, location_id: int | None) -> None:
    """SYS-02: remove KIND's records older than retention; run with the owner's DATABASE_URL.

    \b
    access-log, audit-trail: at least 6 years (HIP-06), the longest of any location's; none while
      any location is under legal hold; whole seals at a time, so what is left still verifies.
    ledger: per location, its oldest entries up to a signed checkpoint, each older than the
      location's retention_years (never under 2 years, DEA-08) by the database's clock; a signed
      anchor is written first, so `clinic ledger verify` still proves what is left (SYS-05). A
      legal hold refuses it; an entry a kept record points at stops the cut before it.
    inventory: not purged by this version (refused and recorded).
    """
    from clinic.audit import retention
    from clinic.core.tx import commit

    who = f"cli:{getpass.getuser()}"
    if kind == "ledger":
        _purge_ledger(who, location_id, dry_run)
        return
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


def _purge_ledger(who: str, location_id: int | None, dry_run: bool) -> None:
    from clinic.core.errors import NotFound
    from clinic.core.tx import commit
    from clinic.inventory import purge

    try:
        ids = purge.location_ids(location_id)
    except NotFound:
        click.echo(f"ledger: no location {location_id}", err=True)
        sys.exit(2)
    refused = False
    for loc in ids:
        run = purge.purge_location(loc, requested_by=who, dry_run=dry_run)
        outcome, rows, detail, cutoff = run.outcome, run.rows, run.detail, run.cutoff
        # one location at a time: its chain head is locked (appends there wait) only until its commit;
        # a refusal and a "nothing" are kept too (a dry run's own plan is not)
        commit()
        where = f"ledger, location {loc}"
        if outcome == "dry_run":
            click.echo(f"{where}: would remove {rows} entries ({detail}; cutoff {cutoff:%Y-%m-%d})")
        elif outcome == "refused":
            refused = True
            click.echo(f"{where}: purge REFUSED: {detail}", err=True)
        elif outcome == "nothing":
            click.echo(f"{where}: nothing to purge: {detail}")
        else:
            click.echo(f"{where}: removed {rows} entries, {detail}")
    if refused:
        sys.exit(1)
