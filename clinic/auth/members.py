"""Memberships: which locations a user acts at (SYS-11); who may read a registrant's records (SYS-13).

Admins grant and withdraw them (``PUT``/``DELETE /locations/{id}/members/{user_id}``, the users page,
``clinic users create --location``). Admins need none: they act everywhere.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Membership, Role, User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.extensions import db
from clinic.locations.models import Location


def _pair(location_id: int, user_id: int) -> tuple[Location, User]:
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location.")
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user.")
    return location, user


def grant(*, actor: User | None, location_id: int, user_id: int) -> User:
    """Make ``user_id`` a member of ``location_id`` (idempotent: granting twice changes nothing)."""
    _, user = _pair(location_id, user_id)
    if user.role == Role.admin:
        raise ValidationFailed(
            "An admin acts at every location and is never a member of one.", errors={"user_id": ["Is an admin."]}
        )
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # ON CONFLICT: two admins granting at once both succeed, and one row stands.
    added = db.session.execute(
        insert(Membership)
        .values(location_id=location_id, user_id=user_id, granted_by_id=actor.id if actor else None)
        .on_conflict_do_nothing()
        .returning(Membership.user_id)
    ).first()
    if added is not None:
        audit.record(
            actor=actor, tag=Tag.auth_membership_grant, subject=("user", user_id), data={"location_id": location_id}
        )
    return user


def revoke(*, actor: User | None, location_id: int, user_id: int) -> None:
    """Withdraw a membership; withdrawing one that does not exist is a no-op (DELETE is idempotent)."""
    _, user = _pair(location_id, user_id)
    gone = db.session.execute(
        delete(Membership)
        .where(Membership.location_id == location_id, Membership.user_id == user_id)
        .returning(Membership.user_id)
    ).first()
    if gone is not None:
        if user.current_location_id == location_id:
            user.current_location_id = None
        audit.record(
            actor=actor, tag=Tag.auth_membership_revoke, subject=("user", user_id), data={"location_id": location_id}
        )


def location_ids_of(user_id: int) -> list[int]:
    return list(
        db.session.scalars(
            select(Membership.location_id).where(Membership.user_id == user_id).order_by(Membership.location_id)
        )
    )


def memberships() -> dict[int, set[int]]:
    """user id -> location ids, for the users page."""
    found: dict[int, set[int]] = {}
    for location_id, user_id in db.session.execute(select(Membership.location_id, Membership.user_id)):
        found.setdefault(user_id, set()).add(location_id)
    return found
