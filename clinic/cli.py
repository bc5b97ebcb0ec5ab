"""The ``clinic`` command (CONTRACT.md): a Flask CLI group built on the one app factory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup, with_appcontext

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def _create_app() -> Flask:
    from clinic import create_app

    return create_app()


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=True)
def main() -> None:
    """clinic-ops administration."""


def alembic_config() -> Config:
    # imported here: alembic is a quarter of a second of every command's start, and only the
    # migration commands (and the readiness and backup checks) use it
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s")
    return cfg


db_group = AppGroup("db", help="Database migrations (never run at boot).")


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default head). Safe to repeat."""
    from alembic import command

    command.upgrade(alembic_config(), revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (e.g. base)."""
    from alembic import command

    command.downgrade(alembic_config(), revision)
    click.echo(f"database at {revision}")


@db_group.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Draft a new revision from the models (edit it before committing)."""
    from alembic import command

    command.revision(alembic_config(), message=message, autogenerate=True)


@db_group.command("grant-app-role")
@click.argument("role")
@click.option(
    "--login-password-env",
    "password_env",
    default=None,
    help="Create ROLE as a login role (or reset its password) with the password in this environment variable.",
)
def db_grant_app_role(role: str, password_env: str | None) -> None:
    """PostgreSQL: give ROLE (an existing login role that owns nothing) what the app needs and no more.

    Append-only tables get SELECT and INSERT only, so the app cannot update, delete, truncate or
    switch off their triggers (only an owner can); everything else gets SELECT, INSERT, UPDATE, DELETE.
    Run it after every `clinic db upgrade`, as the owner of the tables.
    """
    import os

    from clinic.core.appendonly import grant_app_role

    if password_env:
        from clinic.system.roles import ensure_login_role

        if not os.environ.get(password_env):
            raise click.ClickException(f"{password_env} is not set")
        try:
            created = ensure_login_role(role, os.environ[password_env])
        except (RuntimeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{'created' if created else 'updated'} login role {role}")
    tables = grant_app_role(role)
    click.echo(f"granted {role} on {tables} tables")


users_group = AppGroup("users", help="Staff accounts.")


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "prescriber", "nurse", "front_desk", "auditor"]))
@click.option("--license-number", default=None)
@click.option("--license-type", default=None)
@click.option(
    "--location",
    "location_ids",
    type=int,
    multiple=True,
    help="A location the user works at (repeatable; SYS-11). Admins act at every location.",
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(
    email: str,
    name: str,
    role: str,
    license_number: str | None,
    license_type: str | None,
    location_ids: tuple[int, ...],
    password_stdin: bool,
) -> None:
    """Create a user."""
    from clinic.auth import service
    from clinic.core.errors import DomainError
    from clinic.core.tx import commit

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = service.create_user(
            actor=None,
            email=email,
            name=name,
            role=role,
            password=password,
            license_number=license_number,
            license_type=license_type,
            location_ids=location_ids,
        )
        commit()
    except DomainError as exc:
        raise click.ClickException(_explain(exc)) from None
    click.echo(f"created user {user.id} ({user.role})")
    if user.role != "admin" and not location_ids:
        click.echo(
            "note: the user works at no location yet (SYS-11); add one with --location, on the users page, "
            "or with PUT /api/v1/locations/{id}/members/{user_id}",
            err=True,
        )


@users_group.command("token")
@click.option("--email", required=True)
@click.option("--ttl-hours", type=float, default=None)
def users_token(email: str, ttl_hours: float | None) -> None:
    """Print a new API bearer token for the user, and nothing else."""
    from sqlalchemy import select

    from clinic.auth import service
    from clinic.auth.models import User
    from clinic.core.errors import DomainError
    from clinic.core.tx import commit
    from clinic.extensions import db

    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.is_active:
        raise click.ClickException("no active user with that email")
    try:
        token, _ = service.issue_token(user=user, ttl_hours=ttl_hours)
        commit()
    except DomainError as exc:
        raise click.ClickException(_explain(exc)) from None
    click.echo(token)


@main.command("demo")
def demo() -> None:
    """Seed a demo clinic (idempotent) and print the logins."""
    from clinic import demo as demo_data

    logins = demo_data.seed(Path(current_app.instance_path))
    click.echo("Demo clinic ready. Sign in with:")
    for role, email, password in logins:
        click.echo(f"  {role:<11} {email:<28} {password}")
    roles = ", ".join(current_app.config["TOTP_REQUIRED_ROLES"])
    click.echo(f"Roles {roles} set up an authenticator app (TOTP) at their first sign-in.")


ledger_group = AppGroup("ledger", help="The controlled-substance ledger.")


@ledger_group.command("verify")
@click.option("--location", "location_id", type=int, default=None, help="Only this location's chain.")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="The checkpoint key to trust (a PEM file or 64 hex digits); repeat for keys rotated out. "
    "Default: CLINIC_CHECKPOINT_KEY_FINGERPRINTS, else the signing key file's public key.",
)
@click.option(
    "--checkpoints",
    "checkpoint_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signed checkpoints kept outside the database (JSON lines), e.g. an auditor's copy.",
)
def ledger_verify(location_id: int | None, public_keys: tuple[str, ...], checkpoint_files: tuple[Path, ...]) -> None:
    """Re-walk every hash chain: exit 0 with a summary when intact, 1 naming the first bad entry.

    Checkpoints are checked against a pinned key, never the key stored beside them; every stored
    container balance, status and place is checked against the chain's running figures.
    """
    from clinic.core import signing
    from clinic.inventory import integrity

    try:
        keys = tuple(signing.load_public_key(k) for k in public_keys)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from None
    from clinic.audit import seals

    reports = integrity.verify_all(location_id, public_keys=keys, checkpoint_files=checkpoint_files)
    bad = [r for r in reports if not r.ok]
    for r in reports:
        if r.ok:
            click.echo(f"location {r.location_id}: {r.entries} entries intact, head {r.head_hash[:16]}")
        else:
            click.echo(f"location {r.location_id}: BROKEN at seq {r.bad_seq}: {r.problem}")
    if not reports:
        click.echo("no locations")
    # The access log and audit trail belong to no one location: their seals are checked every time.
    logs = seals.verify_all(integrity.pinned_trust(keys))
    for s in logs:
        if s.ok:
            click.echo(f"{s.label}: {s.rows} rows in {s.seals} seals intact, {s.unsealed} not yet sealed")
        else:
            click.echo(f"{s.label}: BROKEN at seal {s.bad_seal}: {s.problem}")
    if bad or any(not s.ok for s in logs):
        sys.exit(1)


@ledger_group.command("checkpoint")
def ledger_checkpoint() -> None:
    """Sign the current head of every chain now (beat also does it hourly)."""
    from clinic.core.tx import commit
    from clinic.inventory import integrity

    made = integrity.sign_checkpoints()
    commit()
    for cp in made:
        click.echo(f"location {cp.location_id}: signed seq {cp.seq} head {cp.head_hash[:16]}")
    if not made:
        click.echo("nothing new to sign")


@click.command("export")
@with_appcontext
@click.argument("kind")
@click.option(
    "--since", required=True, help="First day (YYYY-MM-DD, the location's local day) or a timestamp with offset."
)
@click.option("--until", required=True, help="Last day, inclusive (YYYY-MM-DD), or an exclusive timestamp with offset.")
@click.option(
    "--location", "location_id", type=int, default=None, help="The registrant (one location per ledger export)."
)
@click.option("--format", "file_format", required=True, type=click.Choice(["csv", "jsonl", "pdf"]))
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default="dea-inspection", type=click.Choice(["dea-inspection", "no-phi", "full"]))
@click.option("--schedule", default=None, type=click.Choice(["CII", "CIII", "CIV", "CV"]))
@click.option("--drug", "drug_id", type=int, default=None)
@click.option("--recipient", default=None, help="The outside agency the export goes to (an accounting of disclosures).")
@click.option("--recipient-address", default=None)
@click.option(
    "--purpose-kind",
    default="operations",
    type=click.Choice(["health_oversight", "law_enforcement", "required_by_law", "operations"]),
)
@click.option("--purpose", default=None, help="Why, or the written request it answers.")
@click.option("--as", "as_email", default=None, help="The user the export is made for (default: the operator).")
def export_command(kind: str, file_format: str, output: Path, as_email: str | None, **options: object) -> None:
    """Write an auditor export KIND and its manifest OUTPUT.manifest.json (kinds: dispensing-log,
    receiving-log, waste-log, loss-log, disposal-log, inventory, ledger, access-log, audit-trail)."""
    from sqlalchemy import select

    from clinic.auth.models import User
    from clinic.core.errors import DomainError
    from clinic.core.tx import commit, rollback
    from clinic.exports import service
    from clinic.extensions import db

    actor = None
    if as_email:
        actor = db.session.scalar(select(User).where(User.email == as_email.strip().lower()))
        if actor is None:
            raise click.BadParameter("no such user", param_hint="--as")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=f"{kind}", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        since, until = service.period(str(options.pop("since")), str(options.pop("until")), options["location_id"])  # type: ignore[arg-type]
        export = service.request_export(
            actor=actor,
            kind=kind,
            file_format=file_format,
            since=since,
            until=until,
            out=output.resolve(),
            progress=progress,
            **options,  # type: ignore[arg-type]
        )
        commit()
    except DomainError as exc:
        rollback()
        click.echo(f"export refused: {_explain(exc)}", err=True)
        sys.exit(1)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if export.status != "done":
        click.echo(f"export failed: {export.error}", err=True)
        sys.exit(1)
    click.echo(f"{output}: {export.rows} rows; manifest {output}.manifest.json; {export.verification}")


@ledger_group.command("seal")
@click.option("--wait", "wait_seconds", type=float, default=None, help="Seconds to wait for open transactions.")
def ledger_seal(wait_seconds: float | None) -> None:
    """Seal the access log's and audit trail's closed ranges now (beat also does it every 5 minutes)."""
    from clinic.audit import seals
    from clinic.core.tx import commit

    made = seals.seal_all(wait_seconds=wait_seconds)
    commit()
    for s in made:
        click.echo(f"{seals.LABELS[s.stream]}: sealed {s.row_count} rows, ids {s.first_id}-{s.last_id} (seal {s.seq})")
    if not made:
        click.echo("nothing new to seal")


def _explain(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    detail = getattr(exc, "detail", str(exc))
    return f"{detail}: {errors}" if errors else detail


def init_app(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(users_group)
    app.cli.add_command(ledger_group)
    app.cli.add_command(export_command)
    from clinic.audit.commands import purge_command

    app.cli.add_command(purge_command)
    from clinic.system import commands as system_commands

    system_commands.init_app(app)  # clinic backup, clinic restore, clinic health
