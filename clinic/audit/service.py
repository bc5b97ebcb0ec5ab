from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import g, has_request_context

from clinic.audit.models import AccessEvent, AuditEvent
from clinic.audit.tags import Tag
from clinic.core import tx
from clinic.core.time import utcnow
from clinic.extensions import db

if TYPE_CHECKING:
    from clinic.auth.models import User


def _request_id() -> str | None:
    return getattr(g, "request_id", None) if has_request_context() else None


def record(
    *, actor: User | None, tag: Tag, subject: tuple[str, int | None], data: dict[str, Any], keep: bool = False
) -> None:
    """Add an audit row to the caller's transaction (ARCHITECTURE rule 10).

    ``keep``: the row records a failure and is written even when the unit of work rolls back.
    """
    event = AuditEvent(**event_values(actor=actor, tag=tag, subject=subject, data=data))
    if keep:
        tx.keep(event)
    else:
        db.session.add(event)


def event_values(
    *, actor: User | None, tag: Tag, subject: tuple[str, int | None], data: dict[str, Any]
) -> dict[str, Any]:
    """An audit row's column values, for a caller that inserts it in a statement of its own making
    (the ledger's one-statement append on PostgreSQL)."""
    return {
        "occurred_at": utcnow(),
        "actor_id": actor.id if actor else None,
        "tag": tag.value,
        "subject_type": subject[0],
        "subject_id": subject[1],
        "data": data,
        "request_id": _request_id(),
    }


def touched(kind: str, object_id: int) -> None:
    """Name an object the request created, for its access-log row (a new ledger entry, not only the URL's ids)."""
    if has_request_context():
        g.setdefault("_touched", []).append(f"{kind}:{object_id}")


def access_event(
    *, user_id: int | None, action: str, obj: str, outcome: str, status_code: int, client_addr: str, request_id: str
) -> dict[str, Any]:
    """The access-log row of a request (HIP-01..03), as values for :func:`log_access`."""
    return {
        "occurred_at": utcnow(),
        "user_id": user_id,
        "action": action[:160],
        "object": obj,  # never cut: an auditor must see every object touched
        "outcome": outcome,
        "status_code": status_code,
        "client_addr": client_addr[:64],
        "request_id": request_id[:64],
    }


# A Core INSERT: written on every request, so no ORM unit-of-work flush and no RETURNING of the id
# nobody reads (inline: the row's values are all given).
_INSERT_ACCESS = AccessEvent.__table__.insert().inline()


def log_access(row: dict[str, Any]) -> None:
    """Insert an access-log row in the current transaction, now (no flush: it depends on nothing)."""
    db.session.connection().execute(_INSERT_ACCESS, row)


def access_insert(row: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The access-log row as the unit of work's last statement (``tx.commit(last=...)``), which
    PostgreSQL receives together with the COMMIT."""
    return AccessEvent.__table__, row
