"""Read-only work on a PostgreSQL streaming replica (``CLINIC_REPLICA_URL``), never a write.

Reports and exports read long ranges; a hot standby can carry them. ``reads()`` (a context manager)
and ``@reading`` (its decorator form, for a view or API method) route the plain SELECTs that
``db.session`` runs inside them to the replica; a flush, an INSERT/UPDATE/DELETE, a locking
``SELECT … FOR UPDATE`` and raw SQL still go to the primary, so the request's own writes (its
access-log row) stay where they belong. The standby refuses writes anyway, and its connections
are opened read-only.

A replica is behind by however long replay takes. So that nobody reads older data than was
committed when they asked, ``reads()`` first takes the primary's WAL position and waits (at most
``REPLICA_WAIT_SECONDS``) for the replica to have replayed it; the replica's reads then run in one
REPEATABLE READ snapshot taken after that point. If the replica does not catch up in time, is
unreachable, or is not a standby of this very primary (a different system identifier), the block
reads from the primary instead. Either way the answer names where it read and at which WAL
position (``Clinic-Read-Source`` and ``Clinic-Read-LSN`` headers; ``ReadPosition`` for an export's
manifest).

Without ``CLINIC_REPLICA_URL`` (or on SQLite) everything reads from the primary.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Flask, Response, after_this_request, current_app, has_request_context
from flask_sqlalchemy.session import Session as _FlaskSession
from sqlalchemy import Engine, Select, create_engine, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_ENGINE = "clinic_replica_engine"
_STATE = "clinic_replica_state"
_lock = threading.Lock()
#: the replica engine while a ``reads()`` block routes to it, else None
_ROUTE: ContextVar[Engine | None] = ContextVar("clinic_replica_route", default=None)
#: after a replica failure, read from the primary for this long before trying it again
RETRY_AFTER_SECONDS = 30.0


class RoutingSession(_FlaskSession):
    """``db.session``: plain reads inside ``reads()`` go to the replica; everything else as before."""

    def get_bind(self, mapper: Any = None, clause: Any = None, bind: Any = None, **kwargs: Any) -> Any:
        replica = _ROUTE.get()
        if (
            replica is not None
            and bind is None
            and not self._flushing
            and isinstance(clause, Select)
            and clause._for_update_arg is None
        ):
            return replica
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


@dataclass
class ReadPosition:
    """Where a block read: ``source`` "replica" or "primary", at WAL position ``lsn``."""

    source: str
    lsn: str | None = None
    #: the primary's position when the block began: the replica had replayed at least this much
    wanted_lsn: str | None = None
    #: why the primary was read although a replica is configured
    reason: str | None = None
    waited_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def headers(self) -> dict[str, str]:
        out = {"Clinic-Read-Source": self.source}
        if self.lsn:
            out["Clinic-Read-LSN"] = self.lsn
        if self.reason:
            out["Clinic-Read-Note"] = self.reason
        return out


def lsn_int(lsn: str) -> int:
    hi, _, lo = lsn.partition("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def configured(app: Flask) -> bool:
    return bool(app.config.get("REPLICA_URL"))


def engine(app: Flask | None = None) -> Engine | None:
    """The replica's engine (made on first use), or None when no replica is configured."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    if not configured(app):
        return None
    found: Engine | None = app.extensions.get(_ENGINE)
    if found is None:
        with _lock:
            found = app.extensions.get(_ENGINE)
            if found is None:
                from clinic.core.db import normalise_database_url

                found = create_engine(
                    normalise_database_url(app.config["REPLICA_URL"]),
                    pool_size=3,
                    max_overflow=5,
                    isolation_level="REPEATABLE READ",  # a report's queries see one moment
                    execution_options={"postgresql_readonly": True},
                    connect_args={"connect_timeout": 3},
                )
                app.extensions[_ENGINE] = found
                app.extensions[_STATE] = {"down_until": 0.0, "checked": False}
    return found


def dispose(app: Flask) -> None:
    found: Engine | None = app.extensions.pop(_ENGINE, None)
    if found is not None:
        found.dispose()


def flushed_lsn() -> str | None:
    """A primary WAL position the standby can reach and every commit so far lies before (None
    without a replica): for a block that has written.

    Neither of the primary's own positions will do once this session has written. The insert
    position counts this session's uncommitted WAL, which a standby receives only once flushed. The
    flushed position can fall inside a record: the WAL writer flushes whole pages, so this session's
    own uncommitted record may straddle it, and a standby reports as replayed only the end of the
    last whole record it has. Either way the standby cannot catch up before this session commits,
    and the block waits for nothing (seen: an export reading the primary after its whole wait).
    So a short transaction of its own notes the insert position, then commits synchronously
    (:data:`clinic.core.tx.FLUSH`: an id and a WAL record of its own, without which PostgreSQL would
    not wait for the flush). That position is after every commit so far; the commit flushes all WAL
    before its own record, whole records included, so the standby replays past that position."""
    from clinic.core import tx
    from clinic.extensions import db

    if not configured(current_app) or db.engine.dialect.name != "postgresql":
        return None
    with tx.alone() as conn:
        position = text(f"SELECT pg_current_wal_insert_lsn()::text, r.* FROM ({tx.FLUSH}) r")  # noqa: S608 (a constant)
        return str(conn.execute(position).one()[0])


@contextlib.contextmanager
def reads(wanted: str | None = None) -> Iterator[ReadPosition]:
    """Route this block's plain reads to the replica once it has caught up with the primary (at its
    current WAL position, or at ``wanted``)."""
    from clinic.extensions import db

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    replica = engine(app)
    if replica is None or db.engine.dialect.name != "postgresql":
        yield ReadPosition("primary")
        return
    wanted = wanted or db.session.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
    position = _catch_up(app, replica, wanted)
    if has_request_context():

        @after_this_request
        def _name_it(response: Response) -> Response:
            response.headers.update(position.headers())
            return response

    token = _ROUTE.set(replica if position.source == "replica" else None)
    try:
        yield position
    finally:
        _ROUTE.reset(token)


def reading(fn: Callable[P, R]) -> Callable[P, R]:
    """``reads()`` around a view or API method, its response's serialisation included."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with reads():
            return fn(*args, **kwargs)

    return wrapper


def _catch_up(app: Flask, replica: Engine, wanted: str) -> ReadPosition:
    state = app.extensions[_STATE]
    if time.monotonic() < state["down_until"]:
        return ReadPosition("primary", wanted, wanted, "replica unavailable")
    started = time.monotonic()
    deadline = started + float(app.config.get("REPLICA_WAIT_SECONDS", 2.0))
    target = lsn_int(wanted)
    try:
        # Not the session's replica connection: its REPEATABLE READ snapshot must begin after the wait.
        with replica.connect() as conn:
            if not state["checked"]:
                _check_identity(conn)
                state["checked"] = True
            pause = 0.005
            while True:
                replayed = conn.execute(text("SELECT pg_last_wal_replay_lsn()::text")).scalar_one()
                conn.rollback()
                if replayed is None:
                    raise _NotAReplica("the replica is not in recovery (it is not a standby)")  # noqa: TRY301
                waited = int((time.monotonic() - started) * 1000)
                if lsn_int(replayed) >= target:
                    return ReadPosition("replica", replayed, wanted, waited_ms=waited)
                if time.monotonic() >= deadline:
                    logger.warning("replica behind: replayed %s, primary at %s after %d ms", replayed, wanted, waited)
                    return ReadPosition("primary", wanted, wanted, f"replica behind (replayed {replayed})", waited)
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
    except _NotAReplica as exc:
        logger.error("CLINIC_REPLICA_URL is not used: %s", exc)  # noqa: TRY400 (a setting, not a crash)
        state["down_until"] = time.monotonic() + RETRY_AFTER_SECONDS
        return ReadPosition("primary", wanted, wanted, "replica misconfigured")
    except DBAPIError:
        logger.warning("replica unreachable; reading from the primary for %d s", RETRY_AFTER_SECONDS)
        state["down_until"] = time.monotonic() + RETRY_AFTER_SECONDS
        return ReadPosition("primary", wanted, wanted, "replica unavailable")


class _NotAReplica(Exception):
    pass


def _check_identity(conn: Any) -> None:
    """The replica must be a physical standby of our primary: same cluster identity, same database."""
    from clinic.extensions import db

    query = text("SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database()")
    theirs = tuple(conn.execute(query).one())
    conn.rollback()
    ours = tuple(db.session.execute(query).one())
    if theirs != ours:
        raise _NotAReplica(f"it is not a standby of this database (cluster/database {theirs} vs {ours})")
