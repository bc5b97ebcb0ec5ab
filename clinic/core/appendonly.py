"""DDL that makes a table append-only at the database level (SYS-01, HIP-04).

Used from migrations. On PostgreSQL row triggers reject UPDATE and DELETE and a statement
trigger rejects TRUNCATE (row triggers do not fire on TRUNCATE). On SQLite, RAISE(ABORT).
"""

from __future__ import annotations

from alembic import op

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION clinic_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def protect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION clinic_reject_mutation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION clinic_reject_mutation()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def unprotect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def drop_function() -> None:
    """Called by the baseline's downgrade, once no protected table is left."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS clinic_reject_mutation()")


#: Every append-only table, across all revisions (kept here so grants and tests agree).
APPEND_ONLY_TABLES = (
    "access_events",
    "audit_events",
    "ledger_entries",
    "ledger_checkpoints",
    "count_lines",
    "log_seals",
    "ledger_anchors",
)


def grant_app_role(role: str) -> int:
    """Least privilege on PostgreSQL (RELIABILITY.md §1.1): SELECT/INSERT on append-only tables."""
    from sqlalchemy import inspect, text

    from clinic.extensions import db

    if db.engine.dialect.name != "postgresql":
        raise RuntimeError("roles exist on PostgreSQL only; on SQLite file permissions are the control")
    if not role.replace("_", "").isalnum():
        raise ValueError("role names are letters, digits and underscores")
    tables = [t for t in inspect(db.engine).get_table_names() if t != "alembic_version"]
    with db.engine.begin() as conn:
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        for table in tables:
            conn.execute(text(f'REVOKE ALL ON "{table}" FROM "{role}"'))
            verbs = "SELECT, INSERT" if table in APPEND_ONLY_TABLES else "SELECT, INSERT, UPDATE, DELETE"
            conn.execute(text(f'GRANT {verbs} ON "{table}" TO "{role}"'))
        conn.execute(text(f'GRANT SELECT ON alembic_version TO "{role}"'))
        conn.execute(text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'))
    return len(tables)
