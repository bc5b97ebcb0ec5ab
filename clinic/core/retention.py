"""The retention guard in the database (SYS-02): no row younger than its retention period is deleted,
whoever asks (the ORM, raw SQL, a script), on either backend. Used from migrations.

- ``access_events`` and ``audit_events`` (HIPAA: 6 years, HIP-06): UPDATE stays refused; DELETE of a
  row is allowed only when it is older than the longest retention of any location (never under 6
  years), no location is under legal hold, and the deleting transaction holds an open ``purges``
  row for that stream covering the row's id. Only ``clinic purge`` opens one, and it is never
  visible to another session (it is opened and closed inside the purging transaction).
- ``counts`` (inventories, DEA-08): DELETE refused while younger than its location's retention
  (at least 2 years) or under legal hold.
- ``ledger_entries`` (DEA-08, migration 0022): UPDATE and TRUNCATE stay refused; DELETE of an entry
  is allowed only when it is older than its location's retention (at least 2 years, by the greater
  of its occurred_at and recorded_at), the location is not under legal hold, and the deleting
  transaction holds an open ``purges`` row (stream ``ledger``) for that location covering its seq.
  Only ``clinic purge ledger`` opens one (clinic.inventory.purge).
- ``count_lines`` stays wholly append-only (clinic.core.appendonly).

The database's own clock decides the age (``now()``; SQLite's ``'now'``), so a process whose clock
is wrong cannot make a young row look old.
"""

from __future__ import annotations

# The DDL below is built from constants of this module only (table names, stream names, floors).
# ruff: noqa: S608

LOG_STREAMS = {"access_events": "access", "audit_events": "audit"}

#: the HIPAA floor for audit logs and documentation (HIP-06) and the DEA floor for records (DEA-08)
LOG_FLOOR_YEARS = 6
RECORD_FLOOR_YEARS = 2

_PG_LOG_GUARD = f"""
CREATE OR REPLACE FUNCTION clinic_log_retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  years int;
  held boolean;
BEGIN
  SELECT greatest({LOG_FLOOR_YEARS}, coalesce(max((jurisdiction->>'retention_years')::int), 0)),
         coalesce(bool_or((jurisdiction->>'legal_hold')::boolean), false)
    INTO years, held FROM locations;
  IF held OR OLD.occurred_at >= now() - make_interval(years => years) THEN
    RAISE EXCEPTION 'table % is append-only: row % is within its retention period of % years or under '
      'legal hold (SYS-02)', TG_TABLE_NAME, OLD.id, years USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM purges WHERE open AND stream = TG_ARGV[0] AND OLD.id <= through_id) THEN
    RAISE EXCEPTION 'table % is append-only: rows past retention are removed only by clinic purge',
      TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;
"""

_PG_COUNT_GUARD = f"""
CREATE OR REPLACE FUNCTION clinic_count_retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  years int;
  held boolean;
BEGIN
  SELECT greatest({RECORD_FLOOR_YEARS}, coalesce((jurisdiction->>'retention_years')::int, 0)),
         coalesce((jurisdiction->>'legal_hold')::boolean, false)
    INTO years, held FROM locations WHERE id = OLD.location_id;
  IF held OR greatest(OLD.occurred_at, OLD.recorded_at) >= now() - make_interval(years => years) THEN
    RAISE EXCEPTION 'inventory % is within its retention period of % years or under legal hold (SYS-02)',
      OLD.id, years USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;
"""


def _sqlite_log_trigger(table: str, stream: str) -> str:
    years = (
        f"(SELECT max({LOG_FLOOR_YEARS}, coalesce(max(CAST(json_extract(jurisdiction, '$.retention_years') "
        "AS INTEGER)), 0)) FROM locations)"
    )
    held = "(SELECT coalesce(max(json_extract(jurisdiction, '$.legal_hold')), 0) FROM locations)"
    return (
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"WHEN {held} OR OLD.occurred_at >= datetime('now', '-' || {years} || ' years') "
        f"OR NOT EXISTS (SELECT 1 FROM purges WHERE open AND stream = '{stream}' AND OLD.id <= through_id) "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: within its retention period, under legal hold, "
        "or not removed by clinic purge (SYS-02)'); END"
    )


_SQLITE_COUNT_TRIGGER = (
    "CREATE TRIGGER counts_retention BEFORE DELETE ON counts "
    "WHEN (SELECT coalesce(json_extract(jurisdiction, '$.legal_hold'), 0) FROM locations WHERE id = OLD.location_id) "
    "OR max(OLD.occurred_at, OLD.recorded_at) >= datetime('now', '-' || "
    f"(SELECT max({RECORD_FLOOR_YEARS}, coalesce(CAST(json_extract(jurisdiction, '$.retention_years') AS INTEGER), 0)) "
    "FROM locations WHERE id = OLD.location_id) || ' years') "
    "BEGIN SELECT RAISE(ABORT, 'an inventory within its retention period or under legal hold (SYS-02)'); END"
)


_PG_LEDGER_GUARD = f"""
CREATE OR REPLACE FUNCTION clinic_ledger_retention_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  years int;
  held boolean;
BEGIN
  SELECT greatest({RECORD_FLOOR_YEARS}, coalesce((jurisdiction->>'retention_years')::int, 0)),
         coalesce((jurisdiction->>'legal_hold')::boolean, false)
    INTO years, held FROM locations WHERE id = OLD.location_id;
  IF held OR greatest(OLD.occurred_at, OLD.recorded_at) >= now() - make_interval(years => years) THEN
    RAISE EXCEPTION 'table ledger_entries is append-only: entry % (seq %) is within its retention period of % '
      'years or under legal hold (SYS-02, DEA-08)', OLD.id, OLD.seq, years USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM purges WHERE open AND stream = 'ledger' AND location_id = OLD.location_id
                 AND OLD.seq <= through_id) THEN
    RAISE EXCEPTION 'table ledger_entries is append-only: entries past retention are removed only by clinic purge '
      'ledger (SYS-02)' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;
"""

_SQLITE_LEDGER_TRIGGER = (
    "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
    "WHEN (SELECT coalesce(json_extract(jurisdiction, '$.legal_hold'), 0) FROM locations WHERE id = OLD.location_id) "
    "OR max(OLD.occurred_at, OLD.recorded_at) >= datetime('now', '-' || "
    f"(SELECT max({RECORD_FLOOR_YEARS}, coalesce(CAST(json_extract(jurisdiction, '$.retention_years') AS INTEGER), 0)) "
    "FROM locations WHERE id = OLD.location_id) || ' years') "
    "OR NOT EXISTS (SELECT 1 FROM purges WHERE open AND stream = 'ledger' AND location_id = OLD.location_id "
    "AND OLD.seq <= through_id) "
    "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: within its retention period, under legal hold, "
    "or not removed by clinic purge ledger (SYS-02, DEA-08)'); END"
)


_PG_PURGE_CLOSED = """
CREATE OR REPLACE FUNCTION clinic_purge_closed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM purges WHERE id = NEW.id AND open) THEN
    RAISE EXCEPTION 'purge % is still open: an open purges row lives only inside its purging transaction '
      'and is never committed (SYS-02)', NEW.id USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END $$;
"""


def close_purges() -> None:
    """SYS-02, PostgreSQL (migration 0023p): a ``purges`` row written open is checked again at COMMIT, and
    refused if still open, so no other session ever sees one (the guards above trust that). A
    deferred constraint trigger; SET CONSTRAINTS ... IMMEDIATE only makes it refuse sooner. SQLite
    has no deferred triggers: there file permissions are the control."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_PURGE_CLOSED)
        op.execute(
            "CREATE CONSTRAINT TRIGGER purges_closed_at_commit AFTER INSERT OR UPDATE ON purges "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.open) EXECUTE FUNCTION clinic_purge_closed()"
        )


def unclose_purges() -> None:
    """The downgrade of 0023p."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS purges_closed_at_commit ON purges")
        op.execute("DROP FUNCTION IF EXISTS clinic_purge_closed()")


def guard_ledger() -> None:
    """Replace the ledger's blanket DELETE refusal with the retention guard (migration 0022; SYS-02,
    DEA-08): an entry goes only past its location's retention, never under hold, under a purge."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_LEDGER_GUARD)
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION clinic_reject_mutation()"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_retention BEFORE DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION clinic_ledger_retention_guard()"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
        op.execute(_SQLITE_LEDGER_TRIGGER)


def unguard_ledger() -> None:
    """Back to the ledger's blanket refusal (the downgrade of 0022)."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_retention ON ledger_entries")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
        op.execute(
            "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
            "FOR EACH ROW EXECUTE FUNCTION clinic_reject_mutation()"
        )
        op.execute("DROP FUNCTION IF EXISTS clinic_ledger_retention_guard()")
    else:
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
        op.execute(
            "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries "
            "BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END"
        )


def guard() -> None:
    """Replace the logs' blanket DELETE refusal with the retention guard; guard inventories."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_LOG_GUARD)
        op.execute(_PG_COUNT_GUARD)
        for table, stream in LOG_STREAMS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION clinic_reject_mutation()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_retention BEFORE DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION clinic_log_retention_guard('{stream}')"
            )
        op.execute(
            "CREATE TRIGGER counts_retention BEFORE DELETE ON counts "
            "FOR EACH ROW EXECUTE FUNCTION clinic_count_retention_guard()"
        )
    else:
        for table, stream in LOG_STREAMS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            op.execute(_sqlite_log_trigger(table, stream))
        op.execute(_SQLITE_COUNT_TRIGGER)


def unguard() -> None:
    """Back to the blanket refusal of 0001 (the downgrade)."""
    from alembic import op  # migrations only: the app never imports alembic at start

    if op.get_bind().dialect.name == "postgresql":
        for table in LOG_STREAMS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_retention ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION clinic_reject_mutation()"
            )
        op.execute("DROP TRIGGER IF EXISTS counts_retention ON counts")
        op.execute("DROP FUNCTION IF EXISTS clinic_log_retention_guard()")
        op.execute("DROP FUNCTION IF EXISTS clinic_count_retention_guard()")
    else:
        for table in LOG_STREAMS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            op.execute(
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
        op.execute("DROP TRIGGER IF EXISTS counts_retention")
