"""``Idempotency-Key`` for POSTs that write ledger entries (CONTRACT.md, F4).

A claim is a row (user, key, request hash) with a lease. The work, the stored response and the
access-log row then commit together in the request's one unit of work, so a replay returns the
first response byte for byte and writes nothing, and the same key with another body is a 422.

On PostgreSQL the claim is inserted in a short transaction of its own (a concurrent twin sees it
at once and gets a 409). Its lease is its owner's mark: a request killed mid-write leaves it, and
once the lease has run out a retry takes the claim over with a lease of its own and runs the
operation. The answer is stored with the COMMIT only where the claim still bears the request's own
lease and no answer, and the COMMIT fails otherwise (:data:`_PG_ANSWER`): of a request that outlived
its lease and the retry that took its claim over, exactly one commits, and the other's work is
rolled back. No row lock is held on the claim, which saves a round trip per request. On SQLite every
transaction takes the write lock (BEGIN IMMEDIATE), so the claim is simply part of the work and a
crash rolls both back.

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
    text,
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


#: a claim held: (its row id, its lease, which marks it as this request's)
Claim = tuple[int, datetime]


def _claim(user_id: int, key: str, request_hash: str) -> Claim | None:
    """A new claim; None when the key is claimed already.

    One INSERT ... ON CONFLICT DO NOTHING: a fresh key (the usual case) costs no read first. On
    PostgreSQL it runs on a connection of its own in autocommit (one round trip, visible to twins at
    once, without committing the request's session); on SQLite it is part of the work's transaction.
    """
    lease = _lease_end()
    values = {"user_id": user_id, "key": key, "request_hash": request_hash, "lease_until": lease}
    values["created_at"] = utcnow()
    if db.engine.dialect.name != "postgresql":
        serial = sqlite_insert(IdempotencyKey).values(values).on_conflict_do_nothing()
        claim_id = db.session.execute(serial.returning(IdempotencyKey.id)).scalar()
    else:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            claim_id = conn.execute(_PG_CLAIM, values).scalar()
    return None if claim_id is None else (claim_id, lease)


def _take_over(row_id: int) -> Claim | None:
    """Take a claim whose lease ran out (its request died, or outlived it), with a lease of our own."""
    lease = _lease_end()
    taken = db.session.execute(
        update(IdempotencyKey)
        .where(
            IdempotencyKey.id == row_id,
            IdempotencyKey.status_code.is_(None),
            or_(IdempotencyKey.lease_until.is_(None), IdempotencyKey.lease_until <= utcnow()),
        )
        .values(lease_until=lease)
        .execution_options(synchronize_session=False)
    )
    return (row_id, lease) if taken.rowcount else None  # type: ignore[attr-defined]


def _release(claim: Claim) -> None:
    """A failed request lets go of its claim, unless a retry has taken it over since."""
    db.session.execute(
        delete(IdempotencyKey)
        .where(
            IdempotencyKey.id == claim[0],
            IdempotencyKey.status_code.is_(None),
            IdempotencyKey.lease_until == claim[1],
        )
        .execution_options(synchronize_session=False)
    )


#: PostgreSQL: the answer, stored with the COMMIT where the claim is still this request's (its lease,
#: no answer yet); where a retry took it over, the division by zero fails the COMMIT and the work
#: with it (:func:`_taken_over`). Built once, so it is compiled once.
_PG_ANSWER = text(
    "WITH answered AS (UPDATE idempotency_keys SET status_code = :answer_status, "
    "content_type = :answer_type, response_body = :answer_body, lease_until = NULL "
    "WHERE id = :claim_id AND lease_until = :claim_lease AND status_code IS NULL RETURNING 1) "
    "SELECT 1 / (SELECT count(*) FROM answered)"
)


def _taken_over(exc: BaseException) -> None:
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "22012":  # division_by_zero: see _PG_ANSWER
        raise IdempotencyInFlight(
            "A retry with this Idempotency-Key took the operation over after this request's lease ran out; "
            "nothing was written here. Retry to get its answer.",
            headers={"Retry-After": "1"},
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
        claim = _claim_or_replay(actor_id, key, request_hash)
        if isinstance(claim, Response):
            return claim
        tx.on_rollback(lambda: _release(claim))
        response = fn(*args, **kwargs)
        # The answer goes with the COMMIT (no round trip of its own: this runs under the chain lock),
        # or with nothing if the unit of work rolls back.
        status, content_type, body = response.status_code, response.content_type, response.get_data(as_text=True)
        if db.engine.dialect.name == "postgresql":
            answer = {"answer_status": status, "answer_type": content_type, "answer_body": body}
            answer.update(claim_id=claim[0], claim_lease=claim[1])
            tx.with_commit_statement(_PG_ANSWER, answer, on_error=_taken_over)
        else:  # the claim was made in this transaction, under SQLite's one write lock: still ours
            values = {"status_code": status, "content_type": content_type, "response_body": body, "lease_until": None}
            tx.with_commit(IdempotencyKey.__table__, values, where={"id": claim[0]})
        return response

    return wrapper


def _claim_or_replay(actor_id: int, key: str, request_hash: str) -> Claim | Response:
    for _ in range(2):  # a twin's claim can vanish (it failed and released it) between our statements
        claim = _claim(actor_id, key, request_hash)
        if claim is not None:
            return claim
        row = _existing(actor_id, key)
        if row is None:
            continue
        if row.request_hash != request_hash or row.status_code is not None:
            return _replay_or_refuse(row, request_hash)
        if row.lease_until is not None and row.lease_until > utcnow():
            raise IdempotencyInFlight(headers={"Retry-After": "1"})
        taken = _take_over(row.id)
        if taken is not None:
            return taken
        db.session.expire(row)
    raise IdempotencyInFlight(headers={"Retry-After": "1"})
