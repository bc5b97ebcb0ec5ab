"""Reading visits: the observation board and one visit as the runner shows it.

The board reads open visits only (``visits.closed`` is indexed with the location), in a fixed
number of statements however many visits the location has had: bench/observation_board.py
measures it against 50,000 past visits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import lazyload

from clinic.core.errors import NotFound
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.scheduling.models import Appointment, AppointmentStatus, Chair
from clinic.visits import rules
from clinic.visits.models import AlertKind, ObservationAlert, Visit, VisitEvent
from clinic.visits.service import gates, hold_reading, protocol_rules, visit_for

S = AppointmentStatus
IN_OBSERVATION = (S.dosed.value, S.observing.value, S.ready_for_discharge.value)


def _alert_view(alert: ObservationAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "checkpoint_minutes": alert.checkpoint,
        "due_at": alert.due_at,
        "raised_at": alert.raised_at,
        "satisfied_at": alert.satisfied_at,
        "late": alert.satisfied_late,
    }


def _timers(visit: Visit, alerts: list[ObservationAlert], now: datetime) -> dict[str, Any]:
    due = sorted(
        (a for a in alerts if a.kind == AlertKind.vitals_due and a.satisfied_at is None and a.cancelled_at is None),
        key=lambda a: a.due_at,
    )
    # Judged here against the due time, not only once the sweeper has raised it, so the API and the
    # pages agree in the seconds between a timer's end and the next sweep.
    overdue = [
        a
        for a in alerts
        if a.kind == AlertKind.vitals_overdue and a.satisfied_at is None and (a.raised_at or a.due_at <= now)
    ]
    left = None
    if visit.earliest_discharge_at is not None:
        left = max(0, int((visit.earliest_discharge_at - now) / timedelta(seconds=1)))
    return {
        "dose_started_at": visit.dose_started_at,
        "earliest_discharge_at": visit.earliest_discharge_at,
        "seconds_left": left,
        "next_vitals_due_at": due[0].due_at if due else None,
        "next_vitals_checkpoint": due[0].checkpoint if due else None,
        "vitals_due": [a.due_at for a in due],
        "overdue_checkpoints": sorted(a.checkpoint for a in overdue),
        "observation_complete": bool(
            visit.dose_ended_at is not None
            and visit.earliest_discharge_at is not None
            and visit.earliest_discharge_at <= now
        ),
        "alerts": [_alert_view(a) for a in alerts if a.raised_at is not None and a.cancelled_at is None],
    }


def observation_board(location_id: int) -> dict[str, Any]:
    """Everyone in observation at a location, with the server's countdown and what is due."""
    if db.session.get(Location, location_id) is None:
        raise NotFound("No such location")
    now = utcnow()
    rows = db.session.execute(
        select(Visit, Appointment.status, Patient.first_name, Patient.last_name, Chair.name)
        .join(Appointment, Appointment.id == Visit.appointment_id)
        .join(Patient, Patient.id == Visit.patient_id)
        .join(Chair, Chair.id == Appointment.chair_id)
        .where(Visit.location_id == location_id, Visit.closed.is_(False), Appointment.status.in_(IN_OBSERVATION))
        .options(lazyload(Visit.doses), lazyload(Visit.vitals))
        .order_by(Visit.earliest_discharge_at, Visit.id)
    ).all()
    ids = [row[0].id for row in rows]
    by_visit: dict[int, list[ObservationAlert]] = {i: [] for i in ids}
    if ids:
        for alert in db.session.scalars(
            select(ObservationAlert)
            .where(ObservationAlert.visit_id.in_(ids), ObservationAlert.cancelled_at.is_(None))
            .order_by(ObservationAlert.visit_id, ObservationAlert.due_at, ObservationAlert.id)
        ):
            by_visit[alert.visit_id].append(alert)
    items = []
    for visit, status, first, last, chair in rows:
        items.append(
            {
                "appointment_id": visit.appointment_id,
                "visit_id": visit.id,
                "patient_id": visit.patient_id,
                "patient_name": f"{first} {last}",
                "chair": chair,
                "status": status,
                **_timers(visit, by_visit[visit.id], now),
            }
        )
    return {"location_id": location_id, "now": now, "items": items}


def visit_detail(appointment_id: int) -> dict[str, Any]:
    """One visit as the runner shows it: where it stands, what blocks it, what was recorded."""
    appt, visit = visit_for(appointment_id, lock=False)
    out: dict[str, Any] = {"appointment_id": appt.id, "status": appt.status, "visit": None}
    if visit is None:
        return out
    rules_ = protocol_rules(visit)
    now = utcnow()
    alerts = list(db.session.scalars(select(ObservationAlert).where(ObservationAlert.visit_id == visit.id)))
    events = list(db.session.scalars(select(VisitEvent).where(VisitEvent.visit_id == visit.id).order_by(VisitEvent.id)))
    held = hold_reading(visit, rules_)
    out["visit"] = visit
    out["protocol"] = {
        "route": rules_.get("route"),
        "drug": rules_.get("drug"),
        "checkpoints": rules.checkpoints(rules_),
    }
    out["gates"] = (
        [{"code": g.code, "message": g.message} for g in gates(appt, visit, at=now)]
        if appt.status == S.checked_in
        else []
    )
    out["held"] = held is not None
    out["events"] = events
    out["timers"] = _timers(visit, [a for a in alerts if a.cancelled_at is None], now)
    return out
