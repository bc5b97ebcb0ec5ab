"""A released schema's rows as portable JSON, and back into either backend at that revision.

``dump`` reads every table of a database through the schema the database itself has (reflection,
not today's models) and writes each value in a form JSON holds; ``load`` inserts those rows into a
database migrated to the same revision, typed by the target's own columns, in foreign-key order,
and moves PostgreSQL's sequences past them. The data never passes through today's code on its
way in, so an upgrade test built on it sees exactly what the release left behind.
"""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Connection, Date, DateTime, Float, LargeBinary, MetaData, Numeric, Time, text
from sqlalchemy.types import TypeEngine

SKIP = {"alembic_version"}
#: fields of an answer that say when it was made, not what the records hold
VOLATILE = {"generated_at"}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _decode(kind: TypeEngine[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, DateTime):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if kind.timezone else parsed
    if isinstance(kind, Date):
        return date.fromisoformat(value)
    if isinstance(kind, Time):
        return time.fromisoformat(value)
    if isinstance(kind, Numeric) and not isinstance(kind, Float):
        return Decimal(str(value))
    if isinstance(kind, Boolean):
        return bool(value)
    if isinstance(kind, LargeBinary):
        return base64.b64decode(value)
    return value


def dump(conn: Connection) -> dict[str, Any]:
    """{table: {"columns": [...], "rows": [[...], ...]}} for every table but Alembic's own."""
    meta = MetaData()
    meta.reflect(conn)
    out: dict[str, Any] = {}
    for table in meta.sorted_tables:
        if table.name in SKIP or table.name.startswith("sqlite_"):
            continue
        columns = [c.name for c in table.columns]
        order = list(table.primary_key.columns) or list(table.columns)
        rows = conn.execute(table.select().order_by(*order)).all()
        out[table.name] = {"columns": columns, "rows": [[_encode(v) for v in row] for row in rows]}
    return out


def load(conn: Connection, tables: dict[str, Any]) -> None:
    """Insert ``tables`` (from :func:`dump`) into the database ``conn`` is on, at the same revision."""
    meta = MetaData()
    meta.reflect(conn)
    unknown = set(tables) - set(meta.tables)
    assert not unknown, f"tables the target schema lacks: {unknown}"
    # Rows the migrations seed themselves (the protocol catalogue) give way to the release's own
    # copy of them, which the release's records point to.
    for table in reversed(meta.sorted_tables):
        if tables.get(table.name, {}).get("rows"):
            conn.execute(table.delete())
    for table in meta.sorted_tables:
        data = tables.get(table.name)
        if not data or not data["rows"]:
            continue
        missing = set(data["columns"]) - set(table.columns.keys())
        assert not missing, f"{table.name}: columns the target schema lacks: {missing}"
        types = [table.columns[name].type for name in data["columns"]]
        rows = [
            {name: _decode(kind, value) for name, kind, value in zip(data["columns"], types, row, strict=True)}
            for row in data["rows"]
        ]
        conn.execute(table.insert(), rows)
    if conn.dialect.name == "postgresql":
        for table in meta.sorted_tables:
            for column in table.columns:
                sequence = conn.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
                ).scalar()
                if sequence:
                    conn.execute(
                        text(
                            f"SELECT setval(:s, coalesce((SELECT max({column.name}) FROM {table.name}), 1), "
                            f"(SELECT max({column.name}) FROM {table.name}) IS NOT NULL)"
                        ),
                        {"s": sequence},
                    )


def contains(found: Any, recorded: Any, path: str = "") -> list[str]:
    """Where ``found`` (an answer today) lacks or changes what ``recorded`` (the release's) held.

    New fields are allowed (the API grows); a field that was there must keep its value.
    """
    if isinstance(recorded, dict):
        if not isinstance(found, dict):
            return [f"{path}: was an object, now {type(found).__name__}"]
        problems = []
        for key, value in recorded.items():
            if key in VOLATILE:
                continue
            if key not in found:
                problems.append(f"{path}.{key}: gone")
            else:
                problems += contains(found[key], value, f"{path}.{key}")
        return problems
    if isinstance(recorded, list):
        if not isinstance(found, list) or len(found) != len(recorded):
            return [f"{path}: {len(recorded)} items, now {len(found) if isinstance(found, list) else found!r}"]
        return [p for i, (f, r) in enumerate(zip(found, recorded, strict=True)) for p in contains(f, r, f"{path}[{i}]")]
    return [] if found == recorded else [f"{path}: {recorded!r}, now {found!r}"]
