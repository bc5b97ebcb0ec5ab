from __future__ import annotations

from datetime import date, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.errors import Conflict, NotFound
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations import profiles
from clinic.locations.models import Location, StorageSite

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoursStrandVisits(Conflict):
    code = "hours_strand_visits"
    title = "Booked visits would fall outside the new opening hours"


def create_location(
    *,
    actor: User,
    name: str,
    address: str,
    dea_registration: str,
    timezone: str,
    phone: str | None = None,
    jurisdiction: dict[str, Any] | None = None,
    rems_certified_until: date | None = None,
) -> Location:
    if db.session.scalar(select(Location.id).where(Location.dea_registration == dea_registration)):
        raise Conflict(
            "Another location has this DEA registration",
            errors={"dea_registration": ["Another location has this DEA registration."]},
        )
    location = Location(
        name=name,
        address=address,
        dea_registration=dea_registration,
        timezone=timezone,
        phone=phone,
        jurisdiction=profiles.profile(None, jurisdiction or {}),
        rems_certified_until=rems_certified_until,
    )
    db.session.add(location)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.locations_location_create,
        subject=("location", location.id),
        data={"dea_registration": dea_registration},
    )
    return location


def get_location(location_id: int) -> Location:
    location = db.session.get(Location, location_id)
    if location is None:
        raise NotFound("No such location")
    return location


def list_locations() -> list[Location]:
    return list(db.session.scalars(select(Location).order_by(Location.name, Location.id)))


def update_location(*, actor: User, location_id: int, changes: dict[str, Any]) -> Location:
    # locked and read again: a change merges into the profile as it is now, so two changes at once
    # (a legal hold placed while another setting is saved, SYS-02) both stay
    location = db.session.get(Location, location_id, with_for_update=True, populate_existing=True)
    if location is None:
        raise NotFound("No such location")
    if "dea_registration" in changes and db.session.scalar(
        select(Location.id).where(Location.dea_registration == changes["dea_registration"], Location.id != location_id)
    ):
        raise Conflict(
            "Another location has this DEA registration",
            errors={"dea_registration": ["Another location has this DEA registration."]},
        )
    diff = {}
    for field, value in changes.items():
        if field == "jurisdiction":
            value = profiles.profile(location.jurisdiction, value)
        old = getattr(location, field)
        if old != value:
            diff[field] = [str(old), str(value)]
            setattr(location, field, value)
    db.session.flush()
    audit.record(actor=actor, tag=Tag.locations_location_update, subject=("location", location.id), data=diff)
    return location


def stranded_visits(location: Location, hours: dict[str, list[str] | None]) -> list[dict[str, Any]]:
    """Booked visits from now on at ``location`` that new ``hours`` would leave outside opening time."""
    from clinic.scheduling.models import Appointment, AppointmentStatus

    tz = ZoneInfo(location.timezone)
    booked = db.session.scalars(
        select(Appointment)
        .where(
            Appointment.location_id == location.id,
            Appointment.status == AppointmentStatus.scheduled.value,
            Appointment.starts_at >= utcnow(),
        )
        .order_by(Appointment.starts_at)
    )
    out = []
    for appt in booked:
        start, end = appt.starts_at.astimezone(tz), appt.ends_at.astimezone(tz)
        span = hours.get(DAYS[start.weekday()])
        if (
            not span
            or end.date() != start.date()
            or not time.fromisoformat(span[0]) <= start.time()
            or not end.time() <= time.fromisoformat(span[1])
        ):
            out.append(
                {"appointment_id": appt.id, "series_id": appt.series_id, "starts_at": appt.starts_at.isoformat()}
            )
    return out


def set_hours(*, actor: User, location_id: int, hours: dict[str, list[str] | None], strand: bool = False) -> Location:
    """New opening hours; refused (naming them) while booked visits would fall outside them:
    move or cancel those first. ``strand`` (the demo's staged visits only) skips the check."""
    location = db.session.scalar(select(Location).where(Location.id == location_id).with_for_update())
    if location is None:
        raise NotFound("No such location")
    stranded = [] if strand else stranded_visits(location, hours)
    if stranded:
        raise HoursStrandVisits(
            f"{len(stranded)} booked visit(s) would fall outside the new hours: move or cancel them first.",
            errors={"visits": stranded},
        )
    location.hours = hours
    db.session.flush()
    audit.record(actor=actor, tag=Tag.locations_hours_set, subject=("location", location.id), data=hours)
    return location


def create_storage_site(*, actor: User, location_id: int, name: str) -> StorageSite:
    get_location(location_id)
    if db.session.scalar(
        select(StorageSite.id).where(StorageSite.location_id == location_id, StorageSite.name == name)
    ):
        raise Conflict(
            "This location already has a storage site with that name",
            errors={"name": ["This location already has a storage site with that name."]},
        )
    site = StorageSite(location_id=location_id, name=name)
    db.session.add(site)
    db.session.flush()
    audit.record(actor=actor, tag=Tag.locations_storage_site_create, subject=("storage_site", site.id), data={})
    return site


def list_storage_sites(location_id: int) -> list[StorageSite]:
    return list(
        db.session.scalars(select(StorageSite).where(StorageSite.location_id == location_id).order_by(StorageSite.name))
    )
