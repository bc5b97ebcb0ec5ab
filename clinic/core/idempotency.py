"""``Idempotency-Key`` for POSTs that write ledger entries (CONTRACT.md, F4).

A key is claimed in its own short transaction, so a concurrent duplicate sees it at once (409).
The work, the stored response and the commit then happen in one transaction: a replay returns the
first response byte for byte and writes nothing; the same key with another body is a 422. A
request that fails releases its key, so the client may retry.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Response, request
from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime
from clinic.core.errors import Conflict, ValidationFailed
from clinic.core.time import utcnow
from clinic.core.tx import commit
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


def _release(claim_id: int) -> None:
    db.session.rollback()
    db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim_id))
    db.session.commit()


def idempotent(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Wrap an API method *outside* its ``@blp.response``; the wrapper owns the commit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        from clinic.auth.policy import current_actor

        key = request.headers.get(HEADER)
        if key is None:
            return _commit_once(fn, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise ValidationFailed(errors={HEADER: [f"Must be 1 to {MAX_KEY_LENGTH} characters."]})
        actor_id = current_actor().id
        request_hash = _request_hash()
        db.session.rollback()
        row = _existing(actor_id, key)
        if row is not None:
            return _replay_or_refuse(row, request_hash)
        claim = IdempotencyKey(user_id=actor_id, key=key, request_hash=request_hash)
        db.session.add(claim)
        try:
            db.session.flush()
            claim_id = claim.id  # now: after the commit it would be a reload
            db.session.commit()
        except IntegrityError:  # a concurrent twin claimed it first
            db.session.rollback()
            row = _existing(actor_id, key)
            if row is None:
                raise IdempotencyInFlight(headers={"Retry-After": "1"}) from None
            return _replay_or_refuse(row, request_hash)
        try:
            response = fn(*args, **kwargs)
            db.session.execute(  # no load of the claim row: this runs under the chain lock
                update(IdempotencyKey)
                .where(IdempotencyKey.id == claim_id)
                .values(
                    status_code=response.status_code,
                    content_type=response.content_type,
                    response_body=response.get_data(as_text=True),
                )
            )
            commit()
        except BaseException as exc:
            if getattr(exc, "keeps_writes", False):
                commit()
            _release(claim_id)
            raise
        return response

    return wrapper


def _commit_once(fn: Callable[..., Response], *args: Any, **kwargs: Any) -> Response:
    try:
        response = fn(*args, **kwargs)
    except BaseException as exc:
        if getattr(exc, "keeps_writes", False):
            commit()
        else:
            db.session.rollback()
        raise
    commit()
    return response
