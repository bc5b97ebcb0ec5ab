"""Model base, naming convention, the UTC column type and SQLite connection setup."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, event
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def enum_check(column: str, enum: type[StrEnum], *, nullable: bool = False) -> str:
    """A CHECK that keeps ``column`` to the enum's values: the database refuses what the code would."""
    values = f"{column} IN ({', '.join(repr(m.value) for m in enum)})"
    return f"{column} IS NULL OR {values}" if nullable else values


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; on SQLite an ISO string read back as aware UTC.

    Naive datetimes are refused: a naive value is a bug about which zone was meant.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Opened right after SQLite's BEGIN IMMEDIATE, so a failed request can undo its work without
#: giving up the write lock (see clinic.core.tx.discard).
WORK_SAVEPOINT = "clinic_work"


def configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE for every transaction.

    pysqlite does not emit BEGIN itself, so without this SQLAlchemy's transactions are not
    real ones and two writers can interleave (PITFALLS.md, SQLAlchemy's pysqlite recipe).
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.exec_driver_sql(f"SAVEPOINT {WORK_SAVEPOINT}")


def normalise_database_url(url: str) -> str:
    """A plain postgresql:// URL means our installed driver, psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


M = TypeVar("M", bound=Base)


def loaded_columns(model: type[Base]) -> tuple[tuple[str, ...], tuple[Column[Any], ...]]:
    """``model``'s attribute names and their columns, in one order: a Core SELECT of these columns
    gives the rows :func:`as_loaded` takes."""
    props = model.__mapper__.column_attrs
    return tuple(p.key for p in props), tuple(p.columns[0] for p in props)  # type: ignore[misc]


_DRIVER_SQL: dict[int, tuple[Any, str]] = {}


def first_row(connection: Connection, statement: Any, params: dict[str, Any]) -> Any:
    """The first row of ``statement`` (None if none); on PostgreSQL read straight through psycopg
    (:func:`_driver_first`), elsewhere or if the driver fails, through SQLAlchemy, which answers a
    lost connection as it always does and invalidates it."""
    row = _driver_first(connection, statement, params)
    return connection.execute(statement, params).first() if row is _NOT_READ else row


_NOT_READ = object()


def _driver_first(connection: Connection, statement: Any, params: dict[str, Any]) -> Any:
    """The first row of ``statement`` read straight through psycopg on PostgreSQL, as SQLAlchemy would
    give it; None if there is none, :data:`_NOT_READ` on another backend or a driver error.

    For a request's one hot read (the bearer token's user): SQLAlchemy's execution and result
    machinery costs several times psycopg's own, and that read runs on every API request. Only for
    a statement whose bound values and columns need no type processing but :class:`UtcDateTime`'s:
    named parameters, plain str/int/bool/None values, and timestamps read back as aware UTC."""
    if connection.dialect.name != "postgresql":
        return _NOT_READ
    cached = _DRIVER_SQL.get(id(statement))
    if cached is None or cached[0] is not statement:
        compiled = statement.compile(dialect=connection.dialect)
        if compiled.positiontup:
            raise RuntimeError("first_row takes named parameters only")
        cached = _DRIVER_SQL[id(statement)] = (statement, compiled.string)
    sql = cached[1]
    driver = connection.connection.driver_connection
    if connection._has_events or connection.engine._has_events:  # listeners still see the statement
        connection.dispatch.before_cursor_execute(connection, None, sql, params, None, False)
    try:
        row = driver.execute(sql, params).fetchone()  # type: ignore[union-attr]
    except Exception:  # SQLAlchemy runs it again and reports it its own way
        return _NOT_READ
    if row is None:
        return None
    return tuple(v.astimezone(UTC) if type(v) is datetime else v for v in row)


def as_loaded(session: Session, model: type[M], keys: Sequence[str], row: Sequence[Any]) -> M:
    """The object the ORM would load into ``session`` from ``row`` (the values of ``model``'s
    attributes ``keys``, all of them, as :func:`loaded_columns` names them): the one already in the
    session if it is (a query returns that one too, unrefreshed), else a new one holding these values
    as committed, with no history. For a hot read of one plain row (the request's token lookup),
    where the ORM's per-query loading machinery costs several times the read. Columns only: a model
    with relationships is not for this."""
    mapper = model.__mapper__
    values = dict(zip(keys, row, strict=True))
    identity = mapper.identity_key_from_primary_key(
        tuple(values[mapper.get_property_by_column(c).key] for c in mapper.primary_key)
    )
    existing = session.identity_map.get(identity)
    if existing is not None:
        return existing
    obj = mapper.class_manager.new_instance()
    obj.__dict__.update(values)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj
