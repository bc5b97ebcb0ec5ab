"""Which locations' records a user may read.

Admins and auditors read every location for now; the memberships change narrows this to the
locations granted to each user, and every export and list asks here, so it changes in one place.
"""

from __future__ import annotations

from sqlalchemy import select

from clinic.auth.models import User
from clinic.extensions import db
from clinic.locations.models import Location


def readable_location_ids(user: User | None) -> set[int]:
    """The locations ``user`` may read; None is the command line (the operator reads all)."""
    return set(db.session.scalars(select(Location.id)))
