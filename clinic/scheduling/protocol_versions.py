"""Protocols as data: admins and prescribers add versions of a clinic's own courses.

The schema (``CreateProtocolSchema``) checks the shape; this module checks what makes a protocol
unsafe to book, which no shape can say: a dose outside the drug's bounds (IVK-03, SPR-20), visits
closer than 24 hours (IVK-07), an esketamine course outside the REMS (SPR-03), with less than
two hours of observation (SPR-01), without the blood pressure at about 40 minutes (SPR-10), with
a pre-dose hold above 140/90 (SPR-11) or more than two visits a week (SPR-21, SPR-22), and a course
without an endpoint (IVK-08). A new version
becomes the current one for new bookings; booked courses keep the version they were booked with
(their ``protocol_id`` names the row, which is never edited).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import Role, User
from clinic.core.errors import Conflict, PermissionDenied, ValidationFailed
from clinic.extensions import db
from clinic.scheduling.models import Protocol

#: IVK-03: trials used 0.1 to 0.75 mg/kg; the seeded protocols allow up to 1.0 mg/kg
KETAMINE_MG_PER_KG = (Decimal("0.1"), Decimal("1.0"))
#: SPR-20: one 28 mg device; a dose is 56 or 84 mg (two or three devices)
ESKETAMINE_DEVICE_MG = Decimal("28")
ESKETAMINE_DOSES_MG = frozenset({Decimal("56"), Decimal("84")})
#: IVK-07: no course places two sessions closer than a day
MIN_SPACING_HOURS = 24
#: SPR-01: esketamine patients are observed at least two hours
ESKETAMINE_OBSERVATION_MINUTES = 120
#: SPR-11: a pre-dose blood pressure above 140/90 holds an esketamine dose for the prescriber
ESKETAMINE_BP_HOLD = (140, 90)
#: SPR-10: blood pressure about 40 minutes after an esketamine dose (a checkpoint in this window)
ESKETAMINE_BP_CHECK_MINUTES = (35, 45)
#: SPR-21, SPR-22: esketamine is given twice a week at most (induction), less often after
ESKETAMINE_MAX_PER_WEEK = 2
ROUTES = {"ketamine": {"IV", "IM"}, "esketamine": {"intranasal"}}


def unsafe(rules: dict[str, Any]) -> dict[str, list[str]]:
    """Every reason these rules cannot be saved, by field of ``rules`` (empty when safe)."""
    errors: dict[str, list[str]] = {}

    def bad(field: str, message: str) -> None:
        errors.setdefault(field.removeprefix("rules."), []).append(message)

    drug, dose = rules["drug"], rules["dose"]
    if not str(rules.get("endpoint") or "").strip():
        bad("rules.endpoint", "Say when the course ends and is reviewed (IVK-08).")
    if rules["route"] not in ROUTES[drug]:
        bad("rules.route", f"{drug} is given {' or '.join(sorted(ROUTES[drug]))}.")
    if rules["min_spacing_hours"] < MIN_SPACING_HOURS:
        bad("rules.min_spacing_hours", f"Sessions at least {MIN_SPACING_HOURS} hours apart (IVK-07).")
    if any(p["per_week"] > rules["max_per_week"] for p in rules["phases"]):
        bad("rules.phases", "A phase has more visits a week than max_per_week.")
    if rules["chair_minutes"] < rules["infusion_minutes"] + min(rules["observation_minutes"], 60):
        bad("rules.chair_minutes", "The chair time must hold the dose and the observation.")
    if drug == "ketamine":
        if dose["kind"] != "mg_per_kg" or not {"target", "min", "max"} <= set(dose):
            bad("rules.dose", "Ketamine is dosed by weight: kind mg_per_kg with target, min and max.")
        else:
            low, high = KETAMINE_MG_PER_KG
            target, lo, hi = (Decimal(dose[k]) for k in ("target", "min", "max"))
            if not low <= lo <= target <= hi <= high:
                bad(
                    "rules.dose", f"Ketamine doses must satisfy {low} <= min <= target <= max <= {high} mg/kg (IVK-03)."
                )
        if rules.get("requires_rems"):
            bad("rules.requires_rems", "The SPRAVATO REMS applies to esketamine only.")
    else:
        options = [Decimal(o) for o in dose.get("options_mg") or []]
        if dose["kind"] != "fixed" or not options:
            bad("rules.dose", "Esketamine is a fixed dose: kind fixed with options_mg.")
        elif not set(options) <= ESKETAMINE_DOSES_MG or Decimal(dose.get("first_mg", options[0])) not in options:
            bad("rules.dose", "Esketamine doses are 56 or 84 mg, the first one of the options (SPR-20).")
        if Decimal(dose.get("device_mg", ESKETAMINE_DEVICE_MG)) != ESKETAMINE_DEVICE_MG:
            bad("rules.dose", "The esketamine device holds 28 mg (SPR-20).")
        if not rules.get("requires_rems"):
            bad("rules.requires_rems", "Esketamine is given only under the SPRAVATO REMS (SPR-03).")
        if rules["observation_minutes"] < ESKETAMINE_OBSERVATION_MINUTES:
            bad("rules.observation_minutes", "Esketamine patients are observed at least 120 minutes (SPR-01).")
        if rules["max_per_week"] > ESKETAMINE_MAX_PER_WEEK:
            bad(
                "rules.max_per_week",
                f"Esketamine is given at most {ESKETAMINE_MAX_PER_WEEK} times a week (SPR-21, SPR-22).",
            )
        systolic, diastolic = ESKETAMINE_BP_HOLD
        if rules["bp_hold"]["systolic"] > systolic or rules["bp_hold"]["diastolic"] > diastolic:
            bad("rules.bp_hold", f"An esketamine dose is held above {systolic}/{diastolic} mmHg at most (SPR-11).")
        early, late = ESKETAMINE_BP_CHECK_MINUTES
        if not any(early <= m <= late for m in rules["vitals_checkpoints_minutes"]):
            bad(
                "rules.vitals_checkpoints_minutes",
                "Esketamine needs a blood-pressure checkpoint about 40 minutes after the dose (SPR-10).",
            )
    return errors


def create_protocol(*, actor: User, code: str, name: str, rules: dict[str, Any]) -> Protocol:
    """A new version of ``code`` (version 1 for a new code), current from now for new bookings."""
    if actor.role_enum not in (Role.admin, Role.prescriber):
        raise PermissionDenied("Only an admin or a prescriber can define a protocol.")
    errors = unsafe(rules)
    if errors:
        raise ValidationFailed("The protocol is not safe to book; nothing was saved.", errors={"rules": errors})
    # one writer per code at a time: the version number is max + 1 under the lock of the current row
    current = db.session.scalars(select(Protocol).where(Protocol.code == code).with_for_update()).all()
    version = (db.session.scalar(select(func.max(Protocol.version)).where(Protocol.code == code)) or 0) + 1
    for row in current:
        row.is_current = False
    protocol = Protocol(code=code, version=version, name=name, rules=dict(rules), is_current=True)
    try:
        with db.session.begin_nested():
            db.session.add(protocol)
            db.session.flush()
    except IntegrityError:  # a concurrent first version of a new code won
        raise Conflict("Another version of this protocol was saved just now; reload and try again.") from None
    audit.record(
        actor=actor,
        tag=Tag.scheduling_protocol_create,
        subject=("protocol", protocol.id),
        data={"code": code, "version": version},
    )
    return protocol
