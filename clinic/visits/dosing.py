"""The dose, in the same transaction as the ledger: both or neither.

The administration (one entry per device, or one for the vial) and any witnessed waste are
appended by clinic.inventory.service inside the visit's unit of work. A refusal anywhere (a gate,
the ledger, a wrong witness password) raises, and the request's owner rolls everything back
(clinic.core.tx): the visit, the ledger and the access log stay as they were.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.core.errors import ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import happened_at, utcnow
from clinic.extensions import db
from clinic.inventory import service as inventory
from clinic.inventory.models import Container, ContainerStatus, LedgerEntry
from clinic.inventory.witness import WitnessSignature
from clinic.reminders import service as reminders
from clinic.scheduling.models import Appointment, AppointmentStatus
from clinic.visits import rules
from clinic.visits.errors import GatesNotMet, RemainderRefused
from clinic.visits.models import AlertKind, DoseItem, ObservationAlert, RemainderAction, Visit
from clinic.visits.service import (
    check_dose,
    dose_bounds,
    gates,
    not_before,
    open_visit,
    overdue_minutes,
    protocol_rules,
    satisfy_checkpoints,
    step,
)

S = AppointmentStatus
#: how far apart device times may be before the nurse is asked whether that is right
MAX_DEVICE_SPAN = timedelta(minutes=60)


@dataclass
class DoseResult:
    visit: Visit
    entries: list[LedgerEntry] = field(default_factory=list)


@dataclass(frozen=True)
class DoseRequest:
    container_ids: list[int]
    dose_ug: int | None = None
    administered_at: datetime | None = None
    device_times: list[datetime] | None = None
    drawn_ug: int | None = None
    infusion_ended_at: datetime | None = None
    duration_reason: str | None = None
    reason: str | None = None
    witness: WitnessSignature | None = None
    waste_reason: str | None = None


def _ordered_dose(visit: Visit, appt: Appointment, req: DoseRequest, *, actor: User, at: datetime) -> int:
    """The dose to give: the prescriber's order for this visit, else the course's standing order
    (the dose planned at booking, or the protocol's target); a prescriber dosing may order it now."""
    bounds = dose_bounds(visit, at=at)
    if actor.role_enum == Role.prescriber and visit.ordered_ug is None:
        dose = req.dose_ug if req.dose_ug is not None else bounds.target_ug
        check_dose(bounds, dose, reason=req.reason)
        visit.ordered_ug, visit.ordered_by_id, visit.ordered_at, visit.order_reason = dose, actor.id, at, req.reason
        return dose
    if visit.ordered_ug is not None:
        ordered = visit.ordered_ug
    elif appt.planned_dose_mg is not None:
        ordered = rules.ug(appt.planned_dose_mg)
    else:
        ordered = bounds.target_ug
    if req.dose_ug is not None and req.dose_ug != ordered:
        raise ValidationFailed(
            errors={
                "dose_mg": [f"The order is {format_mg(ordered)} mg: a different dose needs the prescriber's order."]
            }
        )
    if visit.ordered_ug is None:
        check_dose(bounds, ordered, reason=None)
    return ordered


#: names a catalog drug may go by, generic and brand, for each protocol drug
DRUG_NAMES = {"esketamine": ("esketamine", "spravato"), "ketamine": ("ketamine", "ketalar")}


def _is_drug(name: str, drug: str) -> bool:
    """The catalog drug is the protocol's: its name names the drug, generic or brand, as a word
    ("ketamine" is not "esketamine", and neither is midazolam)."""
    return any(
        re.search(rf"\b{re.escape(word)}\b", name, flags=re.IGNORECASE) for word in DRUG_NAMES.get(drug, (drug,))
    )


def _containers(visit: Visit, ids: list[int], *, form: str, drug: str) -> list[Container]:
    if len(set(ids)) != len(ids):
        raise ValidationFailed(errors={"container_ids": ["Each container once."]})
    found = {c.id: c for c in db.session.scalars(select(Container).where(Container.id.in_(ids)))}
    out = []
    for cid in ids:
        container = found.get(cid)
        if container is None or container.location_id != visit.location_id:
            raise ValidationFailed(errors={"container_ids": [f"Container {cid} is not in this location's stock."]})
        if container.drug.form != form:
            raise ValidationFailed(
                errors={"container_ids": [f"Container {cid} is not a {form.replace('_', ' ')}, as this protocol uses."]}
            )
        if not _is_drug(container.drug.name, drug):
            raise ValidationFailed(
                errors={"container_ids": [f"Container {cid} holds {container.drug.name}, not {drug}."]}
            )
        if form == "vial":
            _not_open_elsewhere(visit, container)
        out.append(container)
    return out


def _not_open_elsewhere(visit: Visit, container: Container) -> None:
    """An opened vial serves one open visit at a time: another visit's remainder is resolved (wasted
    or returned with its measured balance) before it is drawn again (IVK-14)."""
    other = db.session.scalar(
        select(DoseItem.visit_id)
        .join(Visit, Visit.id == DoseItem.visit_id)
        .where(
            DoseItem.container_id == container.id,
            DoseItem.remainder_action.is_(None),
            DoseItem.visit_id != visit.id,
            Visit.closed.is_(False),
        )
        .limit(1)
    )
    if other is not None:
        raise ValidationFailed(
            errors={
                "container_id": [
                    f"Vial {container.id} is open for another patient's visit: resolve its remainder first."
                ]
            }
        )


def _device_times(req: DoseRequest, count: int, at: datetime | None) -> list[datetime]:
    if req.device_times is None:
        # Charted when done: the last device "now" unless the first device's time is given.
        first = at if at is not None else utcnow() - rules.DEVICE_GAP * (count - 1)
        times = [first + rules.DEVICE_GAP * i for i in range(count)]
    else:
        times = [happened_at(t, "device_times") for t in req.device_times]
    if len(times) != count:
        raise ValidationFailed(errors={"device_times": [f"Give one time for each of the {count} devices."]})
    for before, after in itertools.pairwise(times):
        if after - before < rules.DEVICE_GAP:
            raise ValidationFailed(errors={"device_times": ["Rest at least 5 minutes between devices (SPR-20)."]})
    if times[-1] - times[0] > MAX_DEVICE_SPAN:
        raise ValidationFailed(errors={"device_times": ["The devices span more than an hour: check the times."]})
    for t in times:
        happened_at(t, "device_times")
    return times


def record_dose(*, actor: User, appointment_id: int, req: DoseRequest, client_addr: str) -> DoseResult:
    """Check the gates, give the ordered dose and post it to the ledger, then start the timers."""
    appt, visit = open_visit(appointment_id, doing="dose", states=frozenset({S.checked_in}))
    rules_ = protocol_rules(visit)
    devices = rules.is_devices(rules_)
    if not req.container_ids:
        raise ValidationFailed(errors={"container_id": ["Name the container(s) the dose comes from."]})
    at = happened_at(req.administered_at, "administered_at") if req.administered_at or not devices else None
    if devices:
        bounds = dose_bounds(visit, at=at or utcnow())
        count = len(req.container_ids)
        times = _device_times(req, count, at)
        started, ended = times[0], times[-1]
    else:
        assert at is not None
        started, ended = at, at
        times = [at]
    not_before(started, visit.checked_in_at, "administered_at", "check-in")
    failed = gates(appt, visit, at=started)
    if failed:
        raise GatesNotMet(
            "Not yet: " + " ".join(g.message for g in failed),
            errors={"gates": [{"code": g.code, "message": g.message} for g in failed]},
        )
    dose = _ordered_dose(visit, appt, req, actor=actor, at=started)
    containers = _containers(
        visit, req.container_ids, form=rules.container_form(rules_), drug=str(rules_.get("drug", ""))
    )
    result = DoseResult(visit)
    if devices:
        assert bounds.device_ug is not None
        if dose != bounds.device_ug * len(containers):
            n = dose // bounds.device_ug
            raise ValidationFailed(
                errors={
                    "container_ids": [f"{format_mg(dose)} mg is {n} device(s) of {format_mg(bounds.device_ug)} mg."]
                }
            )
        for container, t in zip(containers, times, strict=True):
            if container.status != ContainerStatus.sealed or container.balance_ug != bounds.device_ug:
                raise ValidationFailed(
                    errors={
                        "container_ids": [
                            f"Device {container.id} is not an unused {format_mg(bounds.device_ug)} mg device."
                        ]
                    }
                )
            entry = inventory.record_administration(
                actor=actor,
                container_id=container.id,
                patient_id=visit.patient_id,
                quantity_ug=bounds.device_ug,
                administered_at=t,
                appointment_id=appt.id,
            )
            result.entries.append(entry)
            db.session.add(
                DoseItem(
                    visit_id=visit.id,
                    container_id=container.id,
                    administered_at=t,
                    drawn_ug=bounds.device_ug,
                    administered_ug=bounds.device_ug,
                    wasted_ug=0,
                    administration_entry_id=entry.id,
                )
            )
    else:
        if len(containers) != 1:
            raise ValidationFailed(errors={"container_id": ["An IV or IM dose is drawn from one vial."]})
        container = containers[0]
        drawn = req.drawn_ug if req.drawn_ug is not None else dose
        if drawn < dose:
            raise ValidationFailed(errors={"drawn_mg": ["Cannot be less than the dose given."]})
        if rules_.get("route") == "IV" and req.infusion_ended_at is not None:
            ended = happened_at(req.infusion_ended_at, "infusion_ended_at")
            not_before(ended, started, "infusion_ended_at", "the start of the infusion")
        entry = inventory.record_administration(
            actor=actor,
            container_id=container.id,
            patient_id=visit.patient_id,
            quantity_ug=dose,
            administered_at=started,
            appointment_id=appt.id,
        )
        # IVK-14 again, now that the ledger's lock is ours: a draw from this vial for another visit
        # that passed the first check with ours has committed meanwhile (PostgreSQL), and is seen now
        _not_open_elsewhere(visit, container)
        result.entries.append(entry)
        item = DoseItem(
            visit_id=visit.id,
            container_id=container.id,
            administered_at=started,
            drawn_ug=drawn,
            administered_ug=dose,
            wasted_ug=drawn - dose,
            administration_entry_id=entry.id,
        )
        if drawn > dose:
            # DEA-38..42: the drawn-but-not-given part is wasted now, before a second licensed person.
            waste = inventory.record_waste(
                actor=actor,
                container_id=container.id,
                quantity_ug=drawn - dose,
                reason=req.waste_reason or "drawn but not administered",
                witness=req.witness,
                client_addr=client_addr,
                occurred_at=ended,
                patient_id=visit.patient_id,
            )
            item.waste_entry_id = waste.id
            result.entries.append(waste)
        db.session.add(item)
    visit.dose_ug, visit.dosed_by_id, visit.dose_started_at = dose, actor.id, started
    step(appt, visit, S.dosed, actor=actor, at=started)
    infusing = rules_.get("route") == "IV" and req.infusion_ended_at is None
    if not infusing:
        _end(appt, visit, rules_, actor=actor, ended=ended, duration_reason=req.duration_reason)
    else:
        # Provisional until the infusion ends: the planned duration, then the observation minimum.
        planned = started + timedelta(minutes=int(rules_.get("infusion_minutes", 40)))
        visit.earliest_discharge_at = rules.earliest_discharge(rules_, started_at=started, ended_at=planned)
    db.session.flush()
    _start_timers(visit, rules_)
    db.session.flush()
    reminders.dosed(visit, requires_pmf=bool(rules_.get("requires_rems")))
    audit.record(
        actor=actor,
        tag=Tag.visits_dose_record,
        subject=("appointment", appt.id),
        data={
            "visit_id": visit.id,
            "dose_mg": format_mg(dose),
            "entries": [e.seq for e in result.entries],
            "containers": [c.id for c in containers],
        },
    )
    return result


def _end(
    appt: Appointment, visit: Visit, rules_: dict, *, actor: User, ended: datetime, duration_reason: str | None
) -> None:
    assert visit.dose_started_at is not None
    off = rules.infusion_off_by(rules_, visit.dose_started_at, ended)
    if off is not None and not (duration_reason or "").strip():
        planned = rules_.get("infusion_minutes", 40)
        raise ValidationFailed(
            errors={
                "duration_reason": [
                    f"The infusion ran {planned + off} minutes, outside {planned} ± "
                    f"{rules.rule(rules_, 'infusion_tolerance_minutes')}: say why."
                ]
            }
        )
    visit.dose_ended_at, visit.duration_reason = ended, duration_reason
    visit.earliest_discharge_at = rules.earliest_discharge(rules_, started_at=visit.dose_started_at, ended_at=ended)
    step(appt, visit, S.observing, actor=actor, at=ended)


def end_infusion(
    *, actor: User, appointment_id: int, ended_at: datetime | None = None, duration_reason: str | None = None
) -> Visit:
    appt, visit = open_visit(appointment_id, doing="end the infusion", states=frozenset({S.dosed}))
    ended = happened_at(ended_at, "ended_at")
    assert visit.dose_started_at is not None
    not_before(ended, visit.dose_started_at, "ended_at", "the start of the infusion")
    rules_ = protocol_rules(visit)
    _end(appt, visit, rules_, actor=actor, ended=ended, duration_reason=duration_reason)
    overdue = db.session.scalar(
        select(ObservationAlert).where(
            ObservationAlert.visit_id == visit.id, ObservationAlert.kind == AlertKind.infusion_overdue.value
        )
    )
    if overdue is not None and overdue.satisfied_at is None:
        overdue.satisfied_at, overdue.satisfied_late = ended, overdue.raised_at is not None
    assert visit.earliest_discharge_at is not None
    db.session.add(
        ObservationAlert(
            visit_id=visit.id,
            location_id=visit.location_id,
            kind=AlertKind.observation_complete.value,
            checkpoint=0,
            due_at=visit.earliest_discharge_at,
        )
    )
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_infusion_end,
        subject=("appointment", appt.id),
        data={"visit_id": visit.id, "duration_reason": bool(duration_reason)},
    )
    return visit


def _start_timers(visit: Visit, rules_: dict) -> None:
    """SYS-06: the server computes every due time now and keeps it as a row; the sweeper raises it."""
    assert visit.dose_started_at is not None
    assert visit.earliest_discharge_at is not None
    start, window = visit.dose_started_at, timedelta(minutes=overdue_minutes())
    rows = []
    for checkpoint in rules.checkpoints(rules_):
        due = start + timedelta(minutes=checkpoint)
        rows.append((AlertKind.vitals_due, checkpoint, due))
        rows.append((AlertKind.vitals_overdue, checkpoint, due + window))
    if visit.dose_ended_at is not None:
        rows.append((AlertKind.observation_complete, 0, visit.earliest_discharge_at))
    else:
        # The infusion runs: its end is unknown, so nothing is "complete" yet; if it runs past its
        # planned length and tolerance, say so.
        planned = int(rules_.get("infusion_minutes", 40)) + int(rules.rule(rules_, "infusion_tolerance_minutes"))
        rows.append((AlertKind.infusion_overdue, 0, start + timedelta(minutes=planned)))
    if rules_.get("requires_rems"):
        # SPR-18: the monitoring form is due within 7 days of the session; the alert comes on day 6.
        rows.append((AlertKind.pmf_overdue, 0, start + timedelta(days=6)))
    for kind, checkpoint, due in rows:
        db.session.add(
            ObservationAlert(
                visit_id=visit.id, location_id=visit.location_id, kind=kind.value, checkpoint=checkpoint, due_at=due
            )
        )
    db.session.flush()
    # Readings charted before the dose was (back-charting) may already meet a checkpoint.
    for reading in visit.vitals:
        if reading.taken_at >= start:
            reading.minutes_after_dose = int((reading.taken_at - start) / timedelta(minutes=1))
            satisfy_checkpoints(visit, reading)


def resolve_remainder(
    *,
    actor: User,
    appointment_id: int,
    container_id: int,
    action: str,
    measured_ug: int | None,
    witness: WitnessSignature | None,
    client_addr: str,
    reason: str | None = None,
    occurred_at: datetime | None = None,
) -> DoseItem:
    """IVK-14: before the visit closes, an opened vial's remainder is wasted before a witness, or
    returned to the safe with its measured balance (which must match the book)."""
    appt, visit = open_visit(
        appointment_id,
        doing="resolve the vial's remainder",
        states=frozenset({S.dosed, S.observing, S.ready_for_discharge}),
    )
    item = db.session.scalar(
        select(DoseItem).where(DoseItem.visit_id == visit.id, DoseItem.container_id == container_id)
    )
    if item is None:
        raise ValidationFailed(errors={"container_id": ["This visit's dose did not come from that container."]})
    if item.remainder_action is not None:
        raise RemainderRefused(f"The remainder was already {item.remainder_action}.")
    at = happened_at(occurred_at, "occurred_at")
    assert visit.dose_started_at is not None
    not_before(at, visit.dose_started_at, "occurred_at", "the dose")
    container = inventory.get_container(container_id)
    book = container.balance_ug
    if book == 0:
        raise RemainderRefused("The vial is empty: there is no remainder.")
    if action == RemainderAction.wasted:
        entry = inventory.record_waste(
            actor=actor,
            container_id=container_id,
            quantity_ug=book,
            reason=reason or "remainder of an opened vial",
            witness=witness,
            client_addr=client_addr,
            occurred_at=at,
            patient_id=visit.patient_id,
        )
        item.remainder_entry_id = entry.id
    elif action == RemainderAction.returned:
        if measured_ug is None:
            raise ValidationFailed(errors={"measured_mg": ["Measure what is left in the vial."]})
        if measured_ug != book:
            raise RemainderRefused(
                f"Measured {format_mg(measured_ug)} mg but the ledger holds {format_mg(book)} mg: record the "
                "difference (a spill or loss) before returning the vial.",
                errors={"measured_mg": [f"The ledger holds {format_mg(book)} mg."]},
            )
    else:
        raise ValidationFailed(errors={"action": ["One of: wasted, returned."]})
    item.remainder_action, item.remainder_ug = action, book
    item.remainder_at, item.remainder_by_id = at, actor.id
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.visits_remainder_resolve,
        subject=("appointment", appt.id),
        data={"container_id": container_id, "action": action, "quantity_mg": format_mg(book)},
    )
    return item


def unresolved_remainders(visit: Visit) -> list[DoseItem]:
    """Vials this visit opened that still hold drug with no decision about it."""
    out = []
    for item in visit.doses:
        container = db.session.get(Container, item.container_id)
        if (
            container is not None
            and item.remainder_action is None
            and container.drug.form == "vial"
            and container.balance_ug > 0
        ):
            out.append(item)
    return out
