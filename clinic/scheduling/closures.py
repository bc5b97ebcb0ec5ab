"""A location's closures from the public-holiday calendar (the setup page's button)."""

from __future__ import annotations

from datetime import date

import holidays
from sqlalchemy import select

from clinic.auth.models import User
from clinic.extensions import db
from clinic.locations import service as locations
from clinic.scheduling import service
from clinic.scheduling.models import Closure

#: the years the button offers: the holidays package's calendars are kept for these
FIRST_YEAR, LAST_YEAR = 2000, 2099


def add_public_holidays(*, actor: User, location_id: int, year: int) -> list[Closure]:
    """Close the location on the year's public holidays, federal and (when its profile names a state)
    the state's, from the ``holidays`` package. A day some closure already covers is left alone, so
    pressing the button twice adds nothing the second time."""
    location = locations.get_location(location_id)
    state = location.rule("state")
    rows = db.session.execute(select(Closure.starts_on, Closure.ends_on).where(Closure.location_id == location_id))
    covered: list[tuple[date, date]] = [(a, b) for a, b in rows]
    added = []
    for day, name in sorted(holidays.country_holidays("US", subdiv=state, years=year).items()):
        if any(a <= day <= b for a, b in covered):
            continue
        added.append(
            service.create_closure(actor=actor, location_id=location_id, starts_on=day, ends_on=day, reason=name[:200])
        )
        covered.append((day, day))
    return added


def list_closures(location_id: int) -> list[Closure]:
    return list(
        db.session.scalars(
            select(Closure).where(Closure.location_id == location_id).order_by(Closure.starts_on, Closure.id)
        )
    )
