"""The unit of work: one owner commits each request, task or CLI command, once.

Services only ``flush()``. The owner (``init_app`` for requests, the Celery task base, the CLI's
``commit()``) ends the unit of work with :func:`commit` or :func:`rollback`:

- on success the work, the records it carries (the request's access-log row) and the records kept
  with :func:`keep` commit together, then the :func:`after_commit` queue runs;
- on failure the work is rolled back, the after-commit queue is dropped, and only the kept records
  (a failed sign-in or witness attempt, which throttling counts), the :func:`on_rollback` statements
  and the carried records are written, in a short transaction of their own.

A record that must be visible to other requests at once (a sign-in attempt, counted by throttling
before its password is checked) is written in a transaction of its own with :func:`alone`.

Inside a request nobody else may commit the session: a ``before_commit`` guard raises, so a view
cannot commit half its work early, and a test walks every route to prove none does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, has_app_context, has_request_context
from sqlalchemy import Connection, Engine, Executable, Table, create_engine, event
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from clinic.core.db import WORK_SAVEPOINT
from clinic.extensions import db

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class CommitOutsideOwner(RuntimeError):
    """Something other than the unit of work's owner tried to commit inside a request."""


def after_commit(fn: Callable[[], Any]) -> None:
    """Run ``fn`` once the surrounding unit of work has committed; dropped on rollback."""
    g.setdefault("_after_commit", []).append(fn)


def keep(obj: object) -> None:
    """Write ``obj`` whether the unit of work commits or rolls back.

    Only for records of a failure itself: a failed sign-in must be counted even though the
    request that carried it writes nothing else.
    """
    g.setdefault("_kept", []).append(obj)


def on_rollback(fn: Callable[[], Any]) -> None:
    """Run ``fn`` (statements on ``db.session``) in the short transaction that follows a rollback."""
    g.setdefault("_on_rollback", []).append(fn)


def release_locks_before_flush() -> None:
    """PostgreSQL: this unit of work holds a hot lock (a ledger chain's head) that other writers queue
    behind; release it when the COMMIT is written, not after the WAL flush that makes it durable.

    The COMMIT is sent with ``synchronous_commit`` off for this transaction only, followed in the same
    message by a one-statement transaction (:data:`FLUSH`) that commits synchronously: its flush
    covers every record before it, this commit's included, and the server answers only then. So the
    next writer gets the lock a WAL flush sooner (the flush was most of the time the lock was held),
    while the caller still learns of its commit only once it is durable: a request answers after it.
    Between the two, others can read what is not yet durable; a crash of the database in that window
    loses it, together with everything committed after it, and its caller got no answer. Every
    request and task that acts on what it read writes something of its own (a request its
    access-log row) and commits synchronously, a flush that covers what it read, before it answers
    or publishes (the checkpoint signer publishes after its own commit)."""
    if has_app_context() and db.session.get_bind().dialect.name == "postgresql":  # SQLite: one writer, no WAL flush
        g._release_before_flush = True


def with_commit(table: Table, values: dict[str, Any], *, where: dict[str, Any] | None = None) -> None:
    """Write a row as the unit of work's last statements, just before its COMMIT (on PostgreSQL in
    the COMMIT's own message, no round trip of its own): inserted, or with ``where`` (column ->
    value, all equal) updated. For a write nothing in the request reads back, made while locks are
    held (an Idempotency-Key's answer, under the ledger's chain lock). Dropped on rollback."""
    g.setdefault("_with_commit", []).append(_Late(table, values, where))


def with_commit_statement(
    statement: Executable, params: dict[str, Any], *, on_error: Callable[[BaseException], None]
) -> None:
    """PostgreSQL only: send ``statement`` (built once and reused: it is compiled once) with ``params``
    in the COMMIT's message, before the rows of :func:`with_commit`. If the commit fails, ``on_error``
    is called with the error after the rollback and may raise the domain error it stands for (a rule
    the statement checked). Dropped on rollback. Only for a caller that writes nothing after it."""
    g.setdefault("_with_commit", []).append(_Late(None, params, None, statement, on_error))


@dataclasses.dataclass(frozen=True, slots=True)
class _Late:
    table: Table | None
    values: dict[str, Any]
    where: dict[str, Any] | None
    statement: Executable | None = None
    on_error: Callable[[BaseException], None] | None = None


def _take(name: str) -> list[Any]:
    return g.pop(name, []) if has_app_context() else []


@contextlib.contextmanager
def _owner() -> Iterator[None]:
    g._owner_commits = True
    try:
        yield
    finally:
        g._owner_commits = False


def commit(records: Iterable[object] = (), *, last: tuple[Table, dict[str, Any]] | None = None) -> None:
    """Commit the work with ``records``; on failure roll back (keeping the kept records) and raise.

    ``last``: a row (table, values) inserted as the unit of work's last statement, sent together with
    the COMMIT on PostgreSQL (one round trip for both; every request's access-log row goes this way).
    """
    kept = _take("_kept")
    late: list[_Late] = _take("_with_commit")
    early = bool(g.pop("_release_before_flush", False)) if has_app_context() else False
    if last is not None:
        late.append(_Late(last[0], last[1], None))
    db.session.add_all([*kept, *records])
    try:
        with _owner():
            if late or early:
                db.session.flush()
                _write_with_commit(late, early=early)
            db.session.commit()
    except BaseException as exc:
        g._kept = kept  # the failure path writes them
        rollback()
        for item in late:
            if item.on_error is not None:
                item.on_error(exc)  # raises the rule's own error if the statement refused
        raise
    _take("_on_rollback")
    for fn in _take("_after_commit"):
        try:
            fn()
        except Exception:  # a failed side effect must not undo a committed record
            logger.exception("after-commit hook failed")


#: a transaction whose synchronous commit flushes the WAL: it needs an id (else nothing is committed)
#: and a WAL record of its own (else PostgreSQL commits it without a flush, as it would a transaction
#: that wrote nothing): a non-transactional logical message, which any role may emit at any wal_level
FLUSH = "SELECT pg_current_xact_id(), pg_logical_emit_message(false, 'clinic-ops', 'flush')"


def _write_with_commit(rows: list[_Late], *, early: bool = False) -> None:
    """The late statements; on PostgreSQL as one simple-protocol message "...; COMMIT" (no
    parameters: the simple protocol takes several statements, the extended one only one). The
    server commits there, so the ORM's own commit that follows finds the connection idle and sends
    nothing; a failure of any statement raises here (the server skips the rest of the message, the
    COMMIT included), and the caller rolls back as for a failed commit.

    ``early`` (:func:`release_locks_before_flush`): "...; SET LOCAL synchronous_commit TO off;
    COMMIT; " + :data:`FLUSH`: the last statement is a transaction of its own (the message's
    implicit one, after the COMMIT), synchronous, whose flush covers the COMMIT's record."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        for row in rows:
            if row.statement is not None:
                raise RuntimeError("with_commit_statement is PostgreSQL's")
            table = row.table
            assert table is not None
            if row.where is None:
                connection.execute(table.insert().inline(), row.values)
            else:
                connection.execute(
                    table.update().where(*(table.c[k] == v for k, v in row.where.items())).values(row.values)
                )
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    # read once, not per value: each read is a call into libpq
    plain = raw.info.parameter_status("standard_conforming_strings") == "on"
    statements = []
    for row in sorted(rows, key=lambda r: r.statement is None):  # statements first, then rows, in order
        if row.statement is not None:
            template = _compiled(row.statement, connection.dialect)
            statements.append(template % {k: _literal(v, raw, plain) for k, v in row.values.items()})
            continue
        assert row.table is not None
        name, values = row.table.name, row.values
        if row.where is None:
            columns = ", ".join(f'"{column}"' for column in values)
            literals = ", ".join(_literal(value, raw, plain) for value in values.values())
            statements.append(f'INSERT INTO "{name}" ({columns}) VALUES ({literals})')  # noqa: S608 (quoted)
        else:
            assignments = ", ".join(f'"{column}" = {_literal(value, raw, plain)}' for column, value in values.items())
            condition = " AND ".join(f'"{c}" = {_literal(value, raw, plain)}' for c, value in row.where.items())
            statements.append(f'UPDATE "{name}" SET {assignments} WHERE {condition}')  # noqa: S608 (quoted)
    if early:
        statements += ["SET LOCAL synchronous_commit TO off", "COMMIT", FLUSH]
    else:
        statements.append("COMMIT")
    connection.exec_driver_sql("; ".join(statements), execution_options={"no_parameters": True})


_COMPILED: dict[int, tuple[Executable, str]] = {}


def _compiled(statement: Executable, dialect: Any) -> str:
    """The statement's SQL with ``%(name)s`` placeholders, compiled once per statement object."""
    cached = _COMPILED.get(id(statement))
    if cached is None or cached[0] is not statement:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.positiontup:
            raise RuntimeError("a late statement takes named parameters only")
        cached = _COMPILED[id(statement)] = (statement, compiled.string)
    return cached[1]


def _literal(value: Any, raw: Any, plain: bool) -> str:
    """A value as a PostgreSQL literal. Strings are quoted by doubling quotes, which is the whole of
    quoting when ``standard_conforming_strings`` is on (the default since PostgreSQL 9.1; otherwise,
    and for any other type, psycopg quotes it). Written out because psycopg's general quoting costs
    more CPU than the rest of a small request's commit. ``plain``: ``standard_conforming_strings`` is on."""
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    if type(value) is dict:
        value = json.dumps(value)  # a JSON column's value, as SQLAlchemy's JSON type sends it
    if type(value) is str and plain and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime) and value.tzinfo is not None:
        return f"'{value.isoformat()}'::timestamptz"
    from psycopg import sql

    return sql.Literal(value).as_string(raw)


def discard() -> None:
    """Roll back the work and drop its after-commit queue; kept records wait for :func:`rollback`."""
    if not (g.get("_kept") if has_app_context() else None) or not _undo_holding_the_lock():
        db.session.rollback()
    _take("_after_commit")
    _take("_with_commit")
    if has_app_context():
        g.pop("_release_before_flush", None)


def _undo_holding_the_lock() -> bool:
    """On SQLite, undo the work but keep the write lock until the kept records are written.

    A plain ROLLBACK would free the lock first: a request waiting on it could then count failed
    attempts without this one (N wrong witness passwords at once, one more judged than the limit).
    Rolling back to the savepoint opened after BEGIN IMMEDIATE keeps the transaction, and the
    commit that writes the kept records ends it.
    """
    session = db.session()
    if db.engine.dialect.name != "sqlite" or not session.in_transaction() or not session.is_active:
        return False
    session.connection().exec_driver_sql(f"ROLLBACK TO SAVEPOINT {WORK_SAVEPOINT}")
    session.expunge_all()  # what the work loaded or added is gone with it
    return True


def rollback(records: Iterable[object] = ()) -> None:
    """Roll back the work, then write the kept records, on-rollback statements and ``records``."""
    discard()
    kept, hooks, extra = _take("_kept"), _take("_on_rollback"), list(records)
    if not (kept or hooks or extra):
        return
    try:
        for fn in hooks:
            fn()
        db.session.add_all([*kept, *extra])
        with _owner():
            db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def attempt(action: Callable[[], R]) -> R:
    """Run a page's service call; if it fails, undo its writes at once.

    The page is then rendered again with the error, and what it reads must not show half of
    what failed. The owner still ends the unit of work (writing what the failure kept).
    """
    try:
        result = action()
        db.session.flush()  # a constraint lost to a race fails here, as a form error, not at the commit
    except BaseException:
        discard()
        raise
    return result


def commits(fn: Callable[P, R]) -> Callable[P, R]:
    """Own the unit of work of a CLI command or a task body: commit once, or roll back on any error."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            rollback()
            raise
        commit()
        return result

    return wrapper


_ALONE = "clinic_alone_engine"
_alone_lock = threading.Lock()


def _alone_engine() -> Engine:
    """The app's engine for :func:`alone`, made on first use: the same database, no pool.

    A connection per use, closed after it: these transactions are rare (sign-in attempts) and short,
    at most one per request thread at a time, so nothing is worth keeping open; and nothing kept open
    means nothing to dispose, nothing left stale by a database restart, nothing to ping.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    engine: Engine | None = app.extensions.get(_ALONE)
    if engine is None:
        with _alone_lock:
            engine = app.extensions.get(_ALONE)
            if engine is None:
                from clinic.core.db import configure_sqlite

                url = db.engine.url
                connect_args = {"timeout": 5} if url.get_backend_name() == "sqlite" else {}
                engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
                configure_sqlite(engine)
                app.extensions[_ALONE] = engine
    return engine


@contextlib.contextmanager
def alone() -> Iterator[Connection]:
    """A short transaction of its own, committed as the block ends, whatever the unit of work does.

    Not from the request pool: the caller often holds a connection of it already, and N requests
    each waiting for a second one from a pool of N would wait for each other until it timed out.
    Never while the request's SQLite transaction is open (it holds the write lock).
    """
    with _alone_engine().begin() as conn:
        yield conn


def _guard_commit(session: Session) -> None:
    if session.in_nested_transaction():  # releasing a SAVEPOINT commits nothing
        return
    if has_request_context() and not g.get("_owner_commits"):
        raise CommitOutsideOwner("only the request's unit of work commits (clinic.core.tx)")


def init_app(app: Flask) -> None:
    if not event.contains(db.session, "before_commit", _guard_commit):  # one listener for every app
        event.listen(db.session, "before_commit", _guard_commit)
