"""``clinic backup``, ``clinic restore`` and ``clinic health`` (CONTRACT.md; README "Operations")."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext


@click.command("backup")
@with_appcontext
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def backup_command(output: Path) -> None:
    """Write a consistent backup to OUTPUT and its signed manifest to OUTPUT.manifest.json."""
    from clinic.system import backup

    try:
        manifest = backup.backup(output)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    rows = sum(manifest["tables"].values())
    click.echo(
        f"backup {output} ({manifest['file']['bytes']} bytes, sha256 {manifest['file']['sha256'][:16]}): "
        f"schema {manifest['schema_revision']}, {len(manifest['tables'])} tables, {rows} rows"
    )
    for chain in manifest["ledger"]:
        cp = chain["last_checkpoint"]
        signed = f"last checkpoint seq {cp['seq']} signed {cp['signed_at']}" if cp else "no checkpoint yet"
        click.echo(f"  location {chain['location_id']}: head seq {chain['head_seq']}, {signed}")
    click.echo(f"manifest {backup.manifest_path(output)}")


@click.command("restore")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", default=None, help="Trust a manifest signed by this Ed25519 key (hex), not ours.")
@click.option("--grant-app-role", "app_role", default=None, help="Then grant this login role the app's rights.")
def restore_command(path: Path, public_key: str | None, app_role: str | None) -> None:
    """Restore the backup at PATH into DATABASE_URL, which must be empty; then prove it whole."""
    from clinic.system import backup

    try:
        report = backup.restore(path, trusted_key=public_key)
    except backup.BackupError as exc:
        raise click.ClickException(f"nothing restored: {exc}") from None
    manifest = report.manifest
    click.echo(f"restored {path}: schema {manifest['schema_revision']}, taken {manifest['created_at']}")
    if app_role:
        from clinic.core.appendonly import grant_app_role

        click.echo(f"granted {app_role} on {grant_app_role(app_role)} tables")
    for chain in report.chains:
        if chain.ok:
            click.echo(f"  location {chain.location_id}: {chain.entries} entries intact, head {chain.head_hash[:16]}")
    if not report.verified:
        click.echo("the backup's schema is not this code's: run `clinic db upgrade`, then `clinic ledger verify`")
    if report.problems:
        for problem in report.problems:
            click.echo(f"  PROBLEM: {problem}", err=True)
        click.echo("the restored database does NOT match its backup or does not verify", err=True)
        sys.exit(1)
    click.echo(
        "row counts, chain heads and checkpoints match the manifest"
        + (" and every chain verifies" if report.verified else "")
    )


@click.command("health")
@with_appcontext
@click.option("--live", is_flag=True, help="Only that the app loads (no service is checked).")
def health_command(live: bool) -> None:
    """Print readiness as JSON (database, migrations, broker, scheduler); exit 1 when not ready.

    For containers with no HTTP port (worker, beat) to use as their healthcheck.
    """
    from clinic.system import service

    checks = {} if live else service.readiness()
    ready = all(value == "ok" for value in checks.values())
    click.echo(json.dumps({"status": "ready" if ready else "not_ready", **checks}))
    if not ready:
        sys.exit(1)


def init_app(app: Flask) -> None:
    for command in (backup_command, restore_command, health_command):
        app.cli.add_command(command)
