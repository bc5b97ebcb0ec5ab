"""``Idempotency-Key`` for POSTs that write ledger entries (CONTRACT.md, F4).

A claim is a row (user, key, request hash) with a lease. The work, the stored response and the
access-log row then commit together in the request's one unit of work, so a replay returns the
first response byte for byte and writes nothing, and the same key with another body is a 422.

On PostgreSQL the claim is inserted in a short transaction of its own (a concurrent twin sees it
at once and gets a 409) and then row-locked by the work's transaction. A request killed mid-write
loses its lock with its connection; once the lease has run out a retry takes the claim over and
runs the operation, and an UPDATE on a claim still locked by a live request waits for it, then
replays it: the operation runs once. On SQLite every transaction takes the write lock
(BEGIN IMMEDIATE), so the claim is simply part of the work and a crash rolls both back.

A request that fails releases its key, so the client may retry at once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core import tx
from clinic.core.db import UtcDateTime
from clinic.core.errors import Conflict, ValidationFailed
from clinic.core.time import utcnow
from clinic.extensions import db

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyKey(db.Model):  # type: ignore[name-defined]
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    content_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: while unanswered: until when the claiming request may still be working (a retry waits)
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    title = "A request with this Idempotency-Key is still being processed; retry shortly"


class IdempotencyKeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was already used with a different request"


def _request_hash() -> str:
    h = hashlib.sha256()
    h.update(request.method.encode() + b" " + request.path.encode() + b"\n")
    h.update(request.get_data(cache=True))
    return h.hexdigest()


def _existing(user_id: int, key: str) -> IdempotencyKey | None:
    return db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))


def _replay_or_refuse(row: IdempotencyKey, request_hash: str) -> Response:
    if row.request_hash != request_hash:
        raise IdempotencyKeyReused(errors={HEADER: ["Use a new key for a different request."]})
    if row.status_code is None:
        raise IdempotencyInFlight(headers={"Retry-After": "1"})
    return Response(
        row.response_body,
        status=row.status_code,
        content_type=row.content_type,
        headers={"Idempotent-Replayed": "true"},
    )


def _lease_end() -> datetime:
    return utcnow() + timedelta(seconds=current_app.config["IDEMPOTENCY_LEASE_SECONDS"])


def _claim_statement() -> Any:
    """PostgreSQL's claim, built once: INSERT ... ON CONFLICT DO NOTHING RETURNING id, committed
    without waiting for its WAL flush (``synchronous_commit`` off for its own transaction only).

    That is safe because nothing relies on a claim surviving a database crash alone: WAL is flushed
    in order, so the work's own (synchronous) commit, which comes later, makes the claim durable with
    it; and a claim lost in a crash belongs to a request whose work was lost too, so a retry runs it
    at once. Twins see the claim as soon as it commits either way. Not waiting for a second flush per
    request also keeps the claims off the WAL lock the ledger's commits wait for under their chain lock.
    """
    table = IdempotencyKey.__table__
    columns = ("user_id", "key", "request_hash", "created_at", "lease_until")
    row = select(*(bindparam(c, type_=table.c[c].type) for c in columns)).where(
        func.set_config("synchronous_commit", "off", True).is_not(None)
    )
    return (
        pg_insert(table)
        .from_select(list(columns), row)
        .on_conflict_do_nothing(index_elements=["user_id", "key"])
        .returning(table.c.id)
    )


_PG_CLAIM = _claim_statement()


def _claim(user_id: int, key: str, request_hash: str) -> int | None:
    """A new claim, held by this request's transaction; None when the key is claimed already.

    One INSERT ... ON CONFLICT DO NOTHING: a fresh key (the usual case) costs no read first. On
    PostgreSQL it runs on a connection of its own in autocommit (one round trip, visible to twins at
    once, without committing the request's session); the work's transaction then locks the row.
    """
    values = {"user_id": user_id, "key": key, "request_hash": request_hash, "lease_until": _lease_end()}
    values["created_at"] = utcnow()
    if db.engine.dialect.name != "postgresql":
        serial = sqlite_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
        return db.session.execute(serial.returning(IdempotencyKey.id)).scalar()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        claim_id: int | None = conn.execute(_PG_CLAIM, values).scalar()
    if claim_id is not None:
        db.session.connection().execute(_LOCK_CLAIM, {"id": claim_id})  # no entity: not through the ORM
    return claim_id


_LOCK_CLAIM = select(IdempotencyKey.id).where(IdempotencyKey.id == bindparam("id")).with_for_update()


def _take_over(row_id: int) -> bool:
    """Take a claim whose lease ran out (its request died); waits for, then loses to, a live one."""
    now = utcnow()
    taken = db.session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == row_id,
            IdempotencyKey.status_code.is_(None),
            or_(IdempotencyKey.lease_until.is_(None), IdempotencyKey.lease_until <= now),
        )
        .values(lease_until=_lease_end())
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _release(claim_id: int) -> None:
    db.session.execute(
        delete(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id, IdempotencyKey.status_code.is_(None))
        .execution_options(synchronize_session=False)
    )


def idempotent(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap an API method *outside* its ``@blp.response``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        from clinic.auth.policy import current_actor

        key = request.headers.get(HEADER)
        if key is None:
            return fn(*args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(errors={HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} characters."]})
        actor_id = current_actor().id
        request_hash = _request_hash()
        claim_id = _claim_or_replay(actor_id, key, request_hash)
        if isinstance(claim_id, Response):
            return claim_id
        tx.on_rollback(lambda: _release(claim_id))
        response = fn(*args, **kwargs)
        # The answer goes with the COMMIT (no round trip of its own: this runs under the chain lock),
        # or with nothing if the unit of work rolls back.
        tx.with_commit(
            IdempotencyKey.__table__,
            {
                "status_code": response.status_code,
                "content_type": response.content_type,
                "response_body": response.get_data(as_text=True),
                "lease_until": None,
            },
            where={"id": claim_id},
        )
        return response

    return wrapper


def _claim_or_replay(actor_id: int, key: str, request_hash: str) -> int | Response:
    for _ in range(2):  # a twin's claim can vanish (it failed and released it) between our statements
        claim_id = _claim(actor_id, key, request_hash)
        if claim_id is not None:
            return claim_id
        row = _existing(actor_id, key)
        if row is None:
            continue
        if row.request_hash != request_hash or row.status_code is not None:
            return _replay_or_refuse(row, request_hash)
        if row.lease_until is not None and row.lease_until > utcnow():
            raise IdempotencyInFlight(headers={"Retry-After": "1"})
        if _take_over(row.id):
            return row.id
        db.session.expire(row)
    raise IdempotencyInFlight(headers={"Retry-After": "1"})
