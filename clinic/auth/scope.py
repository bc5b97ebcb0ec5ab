"""Where a user may act: staff and auditors belong to locations (SYS-11..13).

Admins act at every location; everyone else only where they are a member, and an auditor reads
only the registrants (locations) granted to them. The rule is enforced in one place for every
route: before a view runs, :func:`check_request` resolves every id the request names (in the path,
the query string, a form or anywhere in a JSON body) that belongs to a location (a container, an
appointment, a ledger entry, a patient...) and refuses the request when one of them lies at a
location the actor is not a member of. Lists that span locations narrow themselves with
:func:`readable_location_ids` and :func:`visible_patients`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Request, g, has_request_context
from sqlalchemy import ColumnElement, Select, bindparam, literal, or_, select, union_all
from sqlalchemy.orm import InstrumentedAttribute

from clinic.auth.models import Membership, Role, User
from clinic.core.errors import PermissionDenied
from clinic.extensions import db
from clinic.locations.models import Location


class NotAMember(PermissionDenied):
    code = "not_a_member"
    title = "You do not work at this location"


def member_location_ids(user: User | None) -> frozenset[int] | None:
    """The locations ``user`` may act at, or None for every one (an admin; None is the command line)."""
    if user is None or user.role == Role.admin:
        return None
    cached: dict[int, frozenset[int]] | None = g.get("_memberships") if has_request_context() else None
    if cached is not None and user.id in cached:
        return cached[user.id]
    ids = frozenset(db.session.scalars(select(Membership.location_id).where(Membership.user_id == user.id)))
    if has_request_context():
        g.setdefault("_memberships", {})[user.id] = ids
    return ids


def readable_location_ids(user: User | None) -> set[int]:
    """The locations ``user`` may read (SYS-13: an auditor, the registrants granted); None is the
    command line (the operator reads all)."""
    ids = member_location_ids(user)
    return set(db.session.scalars(select(Location.id))) if ids is None else set(ids)


def may_act_at(user: User | None, location_id: int) -> bool:
    ids = member_location_ids(user)
    return ids is None or location_id in ids


def require_location(user: User | None, location_id: int) -> None:
    """Refuse unless ``user`` works at ``location_id``; free when this request's check already
    proved it (no query on the hot path)."""
    if user is not None and has_request_context() and location_id in g.get("_proved", {}).get(user.id, ()):
        return
    if not may_act_at(user, location_id):
        raise NotAMember("You are not a member of this location; an admin can add you on the users page.")


def acting_user() -> User | None:
    """The request's signed-in user (None outside a request: the command line acts everywhere)."""
    return g.get("actor") if has_request_context() else None


def my_locations(user: User | None) -> list[Location]:
    """The locations ``user`` may act at, the one they last chose first (pages default to it)."""
    query = select(Location).order_by(Location.name, Location.id)
    ids = member_location_ids(user)
    if ids is not None:
        query = query.where(Location.id.in_(sorted(ids)))
    found = list(db.session.scalars(query))
    current = user.current_location_id if user is not None else None
    found.sort(key=lambda loc: loc.id != current)  # stable: the rest keep their order
    return found


def working_location_id(user: User | None) -> int | None:
    """The location a new record of ``user``'s belongs to when none is named: the one they chose
    last, else their first (lowest id); None for an admin or a user of no location."""
    ids = member_location_ids(user)
    if not ids:
        return None
    if user is not None and user.current_location_id in ids:
        return user.current_location_id
    return min(ids)


def remember_location(user: User, location_id: int) -> None:
    """A member of several who opens a location's page works there until they choose another."""
    ids = member_location_ids(user)
    if ids is not None and len(ids) > 1 and location_id in ids and user.current_location_id != location_id:
        user.current_location_id = location_id


# --- patients ------------------------------------------------------------------------------------


def _sees_patients(locations: Any) -> ColumnElement[bool]:
    """SYS-12: a patient is seen by staff of ``locations`` (ids, or a subquery of them) when registered
    at one of them, booked for a course at one, or registered nowhere yet."""
    from clinic.patients.models import Patient
    from clinic.scheduling.models import AppointmentSeries

    booked = select(AppointmentSeries.patient_id).where(AppointmentSeries.location_id.in_(locations))
    return or_(Patient.location_id.in_(locations), Patient.location_id.is_(None), Patient.id.in_(booked))


def visible_patients(user: User | None) -> ColumnElement[bool] | None:
    """A filter on patients for ``user`` (SYS-12); None: no filter (admins)."""
    ids = member_location_ids(user)
    return None if ids is None else _sees_patients(sorted(ids))


def may_see_patient(user: User | None, patient_id: int) -> bool | None:
    """True/False, or None when there is no such patient (the view answers 404)."""
    from clinic.patients.models import Patient

    found = db.session.get(Patient, patient_id)
    if found is None:
        return None
    condition = visible_patients(user)
    if condition is None:
        return True
    return db.session.scalar(select(Patient.id).where(Patient.id == patient_id, condition)) is not None


# --- one check for every request ------------------------------------------------------------------


#: the query of the locations of the records whose ids the (expanding) parameter holds
Resolver = Callable[[Any], Select[Any]]


def _located(column: InstrumentedAttribute[Any], key: InstrumentedAttribute[Any]) -> Resolver:
    def where(record_ids: Any) -> Select[Any]:
        return select(column.label("loc")).where(key.in_(record_ids))

    return where


def _resolvers() -> dict[str, Resolver]:
    """key -> the query of the locations the records named by that key lie at (no row: no such record)."""
    from clinic.exports.models import Export
    from clinic.inventory.models import Container, Discrepancy, DiscrepancyAlert, LedgerEntry, LossReport
    from clinic.locations.models import StorageSite
    from clinic.outcomes.models import OutcomeScore
    from clinic.reminders.models import Notice, Reminder
    from clinic.scheduling.models import Appointment, AppointmentSeries, Chair
    from clinic.visits.models import Visit

    def score(score_ids: Any) -> Select[Any]:
        return (
            select(AppointmentSeries.location_id.label("loc"))
            .join(OutcomeScore, OutcomeScore.series_id == AppointmentSeries.id)
            .where(OutcomeScore.id.in_(score_ids))
        )

    container = _located(Container.location_id, Container.id)
    entry = _located(LedgerEntry.location_id, LedgerEntry.id)
    site = _located(StorageSite.location_id, StorageSite.id)
    return {
        "location_id": _located(Location.id, Location.id),
        "container_id": container,
        "container_ids": container,
        "appointment_id": _located(Appointment.location_id, Appointment.id),
        "series_id": _located(AppointmentSeries.location_id, AppointmentSeries.id),
        "visit_id": _located(Visit.location_id, Visit.id),
        "chair_id": _located(Chair.location_id, Chair.id),
        "storage_site_id": site,
        "to_storage_site_id": site,
        "entry_id": entry,
        "waste_entry_id": entry,
        "administration_entry_id": entry,
        "discrepancy_id": _located(Discrepancy.location_id, Discrepancy.id),
        "alert_id": _located(DiscrepancyAlert.location_id, DiscrepancyAlert.id),
        "report_id": _located(LossReport.location_id, LossReport.id),
        "reminder_id": _located(Reminder.location_id, Reminder.id),
        "notice_id": _located(Notice.location_id, Notice.id),
        "export_id": _located(Export.location_id, Export.id),
        "score_id": score,
    }


_RESOLVERS: dict[str, Resolver] | None = None


def _patients_elsewhere(patient_ids: Any, members: Select[Any]) -> Select[Any]:
    """The homes of the named patients that staff of ``members`` do not see (SYS-12)."""
    from clinic.patients.models import Patient

    return select(Patient.location_id.label("loc")).where(Patient.id.in_(patient_ids), ~_sees_patients(members))


def _named_ids(data: Any, depth: int = 0) -> Iterator[tuple[str, int]]:
    """(key, id) for every located id named anywhere in a JSON body, a form or a query string."""
    if depth > 40:
        return
    if isinstance(data, dict):
        for key, value in data.items():
            if key in _LOCATED_KEYS:
                if isinstance(value, list):
                    yield from ((key, int(v)) for v in value if _is_id(v))
                elif _is_id(value):
                    yield key, int(value)
            elif isinstance(value, dict | list):
                yield from _named_ids(value, depth + 1)
    elif isinstance(data, list):
        for item in data:
            yield from _named_ids(item, depth + 1)


_LOCATED_KEYS = frozenset(
    {
        "location_id",
        "container_id",
        "container_ids",
        "appointment_id",
        "series_id",
        "visit_id",
        "chair_id",
        "storage_site_id",
        "to_storage_site_id",
        "entry_id",
        "waste_entry_id",
        "administration_entry_id",
        "discrepancy_id",
        "alert_id",
        "report_id",
        "reminder_id",
        "notice_id",
        "export_id",
        "score_id",
        "patient_id",
    }
)


def _is_id(value: Any) -> bool:
    """Whether ``value`` names a record: anything that reads as an int does, however spelled (a
    sign, padding, spaces, other scripts' digits), since some reader downstream may read it so."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 < value < 2**31
    if not isinstance(value, str) or len(value) > 100:
        return False
    try:
        return 0 < int(value) < 2**31
    except ValueError:
        return False


def _request_ids(req: Request) -> Iterator[tuple[str, int]]:
    yield from _named_ids(req.view_args or {})
    if req.args:
        yield from _named_ids({k: req.args.getlist(k) for k in req.args if k in _LOCATED_KEYS})
    if req.method in ("GET", "HEAD", "OPTIONS"):
        return
    if req.is_json:
        yield from _named_ids(req.get_json(silent=True))
    elif req.form:
        yield from _named_ids({k: req.form.getlist(k) for k in req.form if k in _LOCATED_KEYS})


def check_request(user: User, req: Request) -> None:
    """Refuse the request if anything it names lies at a location ``user`` does not work at.

    One query however many ids the request names (none when it names none): the union of the
    records' locations, less the user's memberships; any row left is a location the user does not
    work at.
    """
    if user.role == Role.admin:
        return
    named: dict[str, set[int]] = {}
    for key, record_id in _request_ids(req):
        named.setdefault(key, set()).add(record_id)
    if not named:
        return
    params: dict[str, Any] = {f"ids_{key}": sorted(ids) for key, ids in named.items()}
    params["user_id"] = user.id
    # on the session's connection: a plain read, no ORM entity to load (the ORM's execution costs more)
    rows = db.session.connection().execute(_check_statement(tuple(named)), params).all()
    for row in rows:
        if not row.ok:
            if row.what == "patient_id":
                raise NotAMember("This patient is not registered at a location you work at.")
            raise NotAMember("You are not a member of this location; an admin can add you on the users page.")
    # services re-check where they write (require_location): these need no second query
    g.setdefault("_proved", {}).setdefault(user.id, set()).update(row.loc for row in rows if row.what != "patient_id")
    if req.method == "GET" and not req.path.startswith("/api/") and len(named.get("location_id", ())) == 1:
        remember_location(user, next(iter(named["location_id"])))


#: the check's statement for each list of kinds of id named (in the order named), built once: built
#: again for every request, its SELECTs, UNION and subquery were a quarter of an administration's
#: Python time. The ids and the user are parameters (the ids expanding IN lists).
_CHECKS: dict[tuple[str, ...], Any] = {}


def _check_statement(keys: tuple[str, ...]) -> Any:
    stmt = _CHECKS.get(keys)
    if stmt is not None:
        return stmt
    global _RESOLVERS
    if _RESOLVERS is None:
        _RESOLVERS = _resolvers()
    members = select(Membership.location_id).where(Membership.user_id == bindparam("user_id"))
    # one part per kind of id, not per id (SQLite allows 500 parts in a compound SELECT)
    parts = []
    for key in keys:
        ids: Any = bindparam(f"ids_{key}", expanding=True)
        part = _patients_elsewhere(ids, members) if key == "patient_id" else _RESOLVERS[key](ids)
        parts.append(part.add_columns(literal(key).label("what")))
    found = union_all(*parts).subquery("named") if len(parts) > 1 else parts[0].subquery("named")
    stmt = select(found.c.what, found.c.loc, found.c.loc.in_(members).label("ok")).where(found.c.loc.is_not(None))
    if len(_CHECKS) < 512:  # the keys come from the requests: bounded, but never by a client alone
        _CHECKS[keys] = stmt
    return stmt
