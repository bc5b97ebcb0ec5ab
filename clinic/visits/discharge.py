"""Discharge: only when every criterion holds, checked on the server against real UTC time (SYS-06).

SPR-14/15 (at least two hours from the first device, then a clinical assessment), SPR-10/13 (BP
before discharge, pulse oximetry each session), SPR-16 and IVK-09 (a responsible adult drives the
patient home), SPR-01 (sedation, dissociation and respiratory depression resolved; the scales are
SPR-17's), IVK-14 (an opened vial's remainder
resolved before the visit closes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.core.errors import PermissionDenied
from clinic.core.time import happened_at, to_zone, utcnow
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.reminders import service as reminders
from clinic.scheduling.models import AppointmentStatus
from clinic.visits import rules
from clinic.visits.dosing import unresolved_remainders
from clinic.visits.errors import DischargeRefused
from clinic.visits.models import AlertKind, ObservationAlert, Visit, VitalSign
from clinic.visits.service import last_step_at, not_before, open_visit, protocol_rules, step

S = AppointmentStatus
#: the patient leaves with this, in words, on the page and in the API answer: esketamine's label
#: says until the next day after a restful sleep (SPR-16), ketamine's at least 24 hours (IVK-09)
NO_DRIVING = {
    "intranasal": "Do not drive, operate machinery or make important decisions until the next day after a "
    "restful sleep. A responsible adult must take you home.",
    "default": "Do not drive, operate machinery or make important decisions for at least 24 hours. A "
    "responsible adult must take you home.",
}


def no_driving(rules_: dict[str, object]) -> str:
    return NO_DRIVING.get(str(rules_.get("route")), NO_DRIVING["default"])


@dataclass(frozen=True)
class Unmet:
    code: str
    message: str


def _open_checkpoints(visit: Visit, *, before: datetime | None = None) -> list[int]:
    q = select(ObservationAlert.checkpoint).where(
        ObservationAlert.visit_id == visit.id,
        ObservationAlert.kind == AlertKind.vitals_due.value,
        ObservationAlert.satisfied_at.is_(None),
    )
    if before is not None:
        q = q.where(ObservationAlert.due_at <= before)
    return sorted(db.session.scalars(q))


def unmet_criteria(
    visit: Visit,
    *,
    at: datetime,
    ride_confirmed: bool,
    clinically_stable: bool,
    sedation_resolved: bool,
    dissociation_resolved: bool,
    early: bool,
) -> list[Unmet]:
    """Every discharge criterion that does not hold at ``at`` (and now, in real time).

    ``early``: a prescriber gave a reason. It waives checkpoints that were missed, and for IV/IM the
    observation minimum; never the SPRAVATO REMS two hours (SPR-14: no exception, even without side
    effects).
    """
    unmet: list[Unmet] = []
    rems = bool(protocol_rules(visit).get("requires_rems"))
    now = utcnow()
    earliest = visit.earliest_discharge_at
    if visit.dose_ended_at is None or earliest is None:
        unmet.append(Unmet("dose_in_progress", "The infusion has not ended."))
    elif (now < earliest or at < earliest) and (rems or not early):
        location = db.session.get(Location, visit.location_id)
        assert location is not None
        left = math.ceil((earliest - min(now, at)) / timedelta(minutes=1))
        local = to_zone(earliest, location.timezone).strftime("%H:%M")
        unmet.append(
            Unmet(
                "observation_time",
                f"The minimum observation ends at {local} ({left} min left): not before then"
                + (" (the SPRAVATO REMS allows no exception)." if rems and early else "."),
            )
        )
    post = [v for v in visit.vitals if v.minutes_after_dose is not None and v.taken_at <= at]
    missing = [] if early else _open_checkpoints(visit)
    if missing:
        unmet.append(Unmet("vitals_due", "Vital signs still due at " + ", ".join(f"{m} min" for m in missing) + "."))
    if not any(v.taken_at >= at - timedelta(minutes=rules.PRE_DISCHARGE_MINUTES) for v in post):
        unmet.append(
            Unmet(
                "vitals_before_discharge",
                f"Take vital signs within {rules.PRE_DISCHARGE_MINUTES} minutes before discharge.",
            )
        )
    if not any(v.spo2 is not None for v in post):
        unmet.append(Unmet("spo2", "Record pulse oximetry (SpO2) after the dose (SPR-13)."))
    latest: VitalSign | None = max(post, key=lambda v: (v.taken_at, v.id), default=None)
    if latest is not None and latest.out_of_range:
        values = ", ".join(f"{o['field'].replace('_', ' ')} {o['value']} ({o['limit']})" for o in latest.out_of_range)
        unmet.append(Unmet("vitals_out_of_range", f"The latest vital signs are out of range: {values}."))
    if not sedation_resolved or (latest is not None and latest.sedation is not None and latest.sedation < 5):
        unmet.append(Unmet("sedation", "Sedation has not resolved (MOAA/S 5 needed)."))
    if not dissociation_resolved or (latest is not None and latest.dissociation):
        unmet.append(Unmet("dissociation", "Dissociation has not resolved."))
    if not clinically_stable:
        unmet.append(Unmet("clinically_stable", "A clinician must assess the patient as clinically stable."))
    if not ride_confirmed:
        unmet.append(Unmet("ride_confirmed", "Confirm the ride home: a responsible adult takes the patient."))
    unmet.extend(
        Unmet("vial_remainder", f"Container {item.container_id}: waste the remainder with a witness or return it.")
        for item in unresolved_remainders(visit)
    )
    return unmet


def discharge(
    *,
    actor: User,
    appointment_id: int,
    ride_confirmed: bool,
    clinically_stable: bool,
    sedation_resolved: bool,
    dissociation_resolved: bool,
    override_reason: str | None = None,
    occurred_at: datetime | None = None,
) -> Visit:
    appt, visit = open_visit(
        appointment_id, doing="discharge", states=frozenset({S.dosed, S.observing, S.ready_for_discharge})
    )
    at = happened_at(occurred_at, "occurred_at")
    not_before(at, last_step_at(visit), "occurred_at", "the visit's last step")
    # Nothing charted for the visit can have happened after the patient left.
    charted = [v.taken_at for v in visit.vitals] + [d.remainder_at for d in visit.doses if d.remainder_at]
    if charted:
        not_before(at, max(charted), "occurred_at", "the last vital signs or vial record")
    early = bool((override_reason or "").strip())
    if early and actor.role_enum != Role.prescriber:
        raise PermissionDenied("Only a prescriber can discharge before the observation minimum, with a reason.")
    unmet = unmet_criteria(
        visit,
        at=at,
        ride_confirmed=ride_confirmed,
        clinically_stable=clinically_stable,
        sedation_resolved=sedation_resolved,
        dissociation_resolved=dissociation_resolved,
        early=early,
    )
    if unmet:
        raise DischargeRefused(
            " ".join(u.message for u in unmet),
            errors={"unmet": [{"code": u.code, "message": u.message} for u in unmet]},
        )
    assert visit.earliest_discharge_at is not None
    early_now = at < visit.earliest_discharge_at or utcnow() < visit.earliest_discharge_at
    if appt.status == S.observing:
        visit.ready_at, visit.ready_by_id = at, actor.id
        step(appt, visit, S.ready_for_discharge, actor=actor, at=at)
    step(appt, visit, S.discharged, actor=actor, at=at, note=override_reason if early_now else None)
    visit.discharged_at, visit.discharged_by_id, visit.closed = at, actor.id, True
    visit.early_discharge_reason = override_reason if early_now else None
    visit.discharge_checks = {
        "ride_confirmed": ride_confirmed,
        "clinically_stable": clinically_stable,
        "sedation_resolved": sedation_resolved,
        "dissociation_resolved": dissociation_resolved,
        "instructions": no_driving(protocol_rules(visit)),
    }
    # Alerts of a closed visit are moot, except the monitoring form, which is due after it.
    db.session.execute(
        update(ObservationAlert)
        .where(
            ObservationAlert.visit_id == visit.id,
            ObservationAlert.raised_at.is_(None),
            ObservationAlert.satisfied_at.is_(None),
            ObservationAlert.kind != AlertKind.pmf_overdue.value,
        )
        .values(cancelled_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    reminders.dosed(visit, requires_pmf=bool(protocol_rules(visit).get("requires_rems")))  # idempotent
    audit.record(
        actor=actor,
        tag=Tag.visits_visit_discharge,
        subject=("appointment", appt.id),
        data={
            "visit_id": visit.id,
            "early": early_now,
            "minutes": int((at - (visit.dose_started_at or at)) / timedelta(minutes=1)),
        },
    )
    return visit
