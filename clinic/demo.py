"""Demo clinic data. Idempotent: running it twice changes nothing and prints the same logins."""

from __future__ import annotations

import json
import os
import secrets
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic import fixtures
from clinic.auth import service as auth
from clinic.auth.models import User
from clinic.core.time import today_at, utcnow
from clinic.core.tx import commit
from clinic.extensions import db

DEMO_USERS = [
    ("admin", "admin@demo.clinic", "Avery Admin", None, None),
    ("prescriber", "prescriber@demo.clinic", "Dr. Priya Prescriber", "MD", "MD-100200"),
    ("nurse", "nurse@demo.clinic", "Noah Nurse", "RN", "RN-300400"),
    ("nurse", "nurse2@demo.clinic", "Nia Witness", "RN", "RN-300500"),
    ("front_desk", "frontdesk@demo.clinic", "Frankie Desk", None, None),
    ("auditor", "auditor@demo.clinic", "Audrey Auditor", None, None),
]


def _passwords(instance: Path) -> dict[str, str]:
    """Random per install, kept in the instance folder so reruns print the same ones."""
    path = instance / "demo-logins.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    passwords = {email: secrets.token_urlsafe(12) for _, email, *_ in DEMO_USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh)
    return passwords


def seed(instance: Path) -> list[tuple[str, str, str]]:
    passwords = _passwords(instance)
    logins = []
    for role, email, name, license_type, license_number in DEMO_USERS:
        password = passwords[email]
        if db.session.scalar(select(User.id).where(User.email == email)) is None:
            auth.create_user(
                actor=None,
                email=email,
                name=name,
                role=role,
                password=password,
                license_type=license_type,
                license_number=license_number,
            )
        logins.append((role, email, password))
    commit()
    _seed_clinic(passwords)
    commit()
    _seed_schedule()
    commit()
    _seed_visits(passwords)
    commit()
    _seed_reminders()
    commit()
    return logins


DEMO_DEA = "FD1234563"


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    assert user is not None
    return user


def _seed_clinic(passwords: dict[str, str]) -> None:
    """A location with a safe, the drug catalog, a received shipment, doses, waste and a count."""
    from clinic.inventory import service as inventory
    from clinic.inventory.models import Drug
    from clinic.locations.models import Location

    if db.session.scalar(select(Location.id).where(Location.dea_registration == DEMO_DEA)) is not None:
        return
    admin, nurse = _user("admin@demo.clinic"), _user("nurse@demo.clinic")
    witness: dict[str, Any] = {
        "witness": inventory.WitnessSignature("nurse2@demo.clinic", passwords["nurse2@demo.clinic"]),
        "client_addr": "127.0.0.1",
    }
    place = fixtures.create_location(
        admin,
        name="Lakeside Ketamine Clinic",
        address="400 Lake Shore Dr, Chicago IL 60611",
        dea_registration=DEMO_DEA,
        timezone="America/Chicago",
        phone="312-555-0100",
        jurisdiction={"state": "IL"},
        storage_sites=("Main safe", "Infusion room cabinet"),
    )
    location, safe_id = place.location, place.sites[0]
    _seed_second_location(admin, [location.id])
    drugs: list[Drug] = [
        db.session.scalar(select(Drug).where(Drug.ndc == spec.ndc)) or fixtures.create_drug(admin, spec)
        for spec in fixtures.CATALOG
    ]
    # the morning's opening inventory: the visits seeded below draw from stock received since
    fixtures.open_ledger(nurse, location.id, witness["witness"], occurred_at=utcnow() - timedelta(hours=12))
    today = today_at(location.timezone)  # the clinic's own day: UTC's is a day ahead in its evenings
    vials = fixtures.create_receipt(
        nurse,
        storage_site_id=safe_id,
        drug_id=drugs[1].id,
        count=6,
        lot_number="KX2291",
        expires_on=date(today.year + 2, 1, 31),
        invoice_number="INV-40211",
    )
    fixtures.create_receipt(
        nurse,
        storage_site_id=safe_id,
        drug_id=drugs[3].id,
        count=9,
        lot_number="SP7781",
        expires_on=date(today.year + 1, 6, 30),
        invoice_number="INV-40212",
    )
    people = [
        ("Jordan", "Rivera", date(1984, 5, 17)),
        ("Sam", "Okafor", date(1979, 11, 2)),
        ("Alex", "Nguyen", date(1991, 3, 28)),
    ]
    for i, (first, last, born) in enumerate(people):
        patient = fixtures.create_patient(
            nurse,
            first_name=first,
            last_name=last,
            date_of_birth=born,
            address=f"{100 + i} Demo Ave, Chicago IL",
            timezone="America/Chicago",
        )
        vial = vials.containers[i]
        inventory.record_administration(
            actor=nurse, container_id=vial.id, patient_id=patient.id, quantity_ug=35_000 + 5_000 * i
        )
        inventory.record_waste(
            actor=nurse,
            container_id=vial.id,
            quantity_ug=vial.balance_ug,
            reason="unused remainder of a single-patient vial",
            patient_id=patient.id,
            **witness,
        )
    on_hand = inventory.balances(location.id)[0]
    inventory.reconcile_count(
        actor=nurse,
        location_id=location.id,
        kind="shift",
        **witness,
        lines=[{"container_id": c.id, "counted_ug": c.balance_ug, "exact": True} for c in on_hand],
    )


#: who works where (SYS-11): the nurse and the prescriber cover both clinics; the rest work at Lakeside
DEMO_BOTH = ("prescriber@demo.clinic", "nurse@demo.clinic")
DEMO_SECOND_DEA = "FN7654329"


def _seed_second_location(admin: User, first: list[int]) -> None:
    """A second, smaller clinic (its own DEA registration) and the staff memberships of both."""
    from clinic.auth import members

    second = fixtures.create_location(
        admin,
        name="Northside Infusion Center",
        address="2100 N Clark St, Chicago IL 60614",
        dea_registration=DEMO_SECOND_DEA,
        timezone="America/Chicago",
        jurisdiction={"state": "IL"},
        storage_sites=("Safe",),
        chairs=2,
    )
    for _, email, *_ in DEMO_USERS:
        user = _user(email)
        if user.role == "admin":
            continue
        for location_id in [*first, second.id] if email in DEMO_BOTH else first:
            members.grant(actor=admin, location_id=location_id, user_id=user.id)


def _certify(admin: User, location: Any, today: date) -> None:
    """The demo clinic's SPRAVATO REMS certification, a year ahead (renewed when under a month)."""
    from clinic.locations import service as locations

    if location.rems_certified_until is None or location.rems_certified_until < today + timedelta(days=30):
        locations.update_location(
            actor=admin, location_id=location.id, changes={"rems_certified_until": today + timedelta(days=365)}
        )


def _seed_schedule() -> None:
    """Chairs and patients at every stage: booked esketamine and IV courses, one awaiting a
    prescriber's review, one ineligible, one not yet screened."""
    from datetime import time, timedelta

    from clinic.locations.models import Location
    from clinic.scheduling import service as scheduling
    from clinic.scheduling.models import Chair

    location = db.session.scalar(select(Location).where(Location.dea_registration == DEMO_DEA))
    if location is None or db.session.scalar(select(Chair.id).where(Chair.location_id == location.id)):
        return
    admin, desk = _user("admin@demo.clinic"), _user("frontdesk@demo.clinic")
    nurse, prescriber = _user("nurse@demo.clinic"), _user("prescriber@demo.clinic")
    for name in ("Chair 1", "Chair 2", "Infusion bay"):
        scheduling.create_chair(actor=admin, location_id=location.id, name=name)
    # The clinic's own day: at 00:00-06:00 UTC, UTC's date is still tomorrow in Chicago, and a REMS
    # enrolment "today" by UTC's calendar is refused there as a date in the future.
    today = today_at(location.timezone)
    _certify(admin, location, today)  # esketamine is booked only at a certified location (SPR-03)
    monday = today + timedelta(days=7 - today.weekday())  # next Monday, 1 to 7 days ahead
    cases: list[tuple[str, str, date, dict[str, Any] | None, bool, str | None, time | None]] = [
        # (first, last, born, screening answers, REMS, protocol, preferred time)
        ("Morgan", "Lee", date(1988, 2, 14), {}, True, "esketamine-rems", time(9, 0)),
        (
            "Riley",
            "Santos",
            date(1975, 8, 9),
            {"medications": ["clonazepam", "lamotrigine"]},
            False,
            "ketamine-iv-induction",
            time(13, 0),
        ),
        ("Taylor", "Brooks", date(1969, 4, 22), {"psychosis_or_mania": True}, False, None, None),
        ("Jamie", "Fox", date(1993, 12, 3), {"pregnant": True}, False, None, None),
        ("Avery", "Kim", date(2001, 7, 30), None, False, None, None),
    ]
    for first, last, born, answers, rems, protocol, at in cases:
        patient = fixtures.create_patient(
            desk,
            first_name=first,
            last_name=last,
            date_of_birth=born,
            address="12 Demo St, Chicago IL",
            timezone="America/Chicago",
            email=f"{first.lower()}@example.org",
            clinician=nurse,
            screen=answers,
            location_id=location.id,
            weight_g=72_500,
            rems_enrolled_on=today if rems else None,
        )
        if protocol and at:
            fixtures.book_course(
                desk,
                patient_id=patient.id,
                protocol=protocol,
                location_id=location.id,
                prescriber_id=prescriber.id,
                start_on=monday,
                preferred_time=at,
            )


# --- today's visits, at every stage ----------------------------------------------------------------

#: (first, last, protocol, stage, minutes from now to the booked start, weight in kg)
VISIT_STAGES: list[tuple[str, str, str, str, int, int]] = [
    ("Quinn", "Arlow", "esketamine-rems", "arriving", 30, 70),
    ("Rowan", "Patel", "esketamine-rems", "checked_in", 15, 64),
    ("Harper", "Diaz", "ketamine-iv-booster", "held", -15, 81),
    ("Emerson", "Cole", "ketamine-iv-booster", "infusing", -45, 77),
    ("Sasha", "Ivanova", "esketamine-rems", "observing", -75, 68),
    ("Drew", "Tanaka", "ketamine-iv-booster", "observing_iv", -100, 85),
    ("Logan", "Reyes", "esketamine-rems", "ready", -140, 73),
    ("Kai", "Moreno", "esketamine-rems", "discharged", -190, 79),
    ("Blair", "Osei", "ketamine-iv-booster", "discharged_iv", -200, 66),
]
#: chairs enough for every stage at once (they can all fall in the first hours of the day)
EXTRA_CHAIRS = ("Chair 3", "Chair 4", "Chair 5", "Chair 6", "Infusion bay 2", "Infusion bay 3", "Recliner")
ALL_DAY: dict[str, list[str] | None] = {
    day: ["00:00", "23:59"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
}


def _booked_time(now: datetime, offset_minutes: int, chair_minutes: int, tz: ZoneInfo) -> time:
    """The local start ``offset_minutes`` from now, on a 15-minute boundary, kept inside today
    there (the course starts today) with room for the chair time before midnight. Check-in may be
    up to 4 hours before the start, so every stage still fits at 00:30 or at 23:30."""
    today = now.astimezone(tz).date()
    first = datetime.combine(today, time(0), tzinfo=tz)
    last = datetime.combine(today, time(23, 59), tzinfo=tz) - timedelta(minutes=chair_minutes)
    at = min(max((now + timedelta(minutes=offset_minutes)).astimezone(tz), first), last)
    return at.replace(minute=at.minute // 15 * 15, second=0, microsecond=0).time()


def _seed_visits(passwords: dict[str, str]) -> None:
    """Patients at every stage of today's visit when the demo starts: arriving, checked in, held
    on a blood pressure, infusing, in observation (one with its 40-minute vitals overdue), ready,
    and discharged; all through the visit services, with times back-charted relative to now, so
    the board counts down at whatever hour the demo is started.

    The courses are booked for today at the clinic's local time of each stage. So that this works
    at night and at weekends too, the location's hours are opened around the clock while these
    courses are booked, then put back (both changes are in the audit log): a demo started out of
    hours leaves these courses' later visits at that hour.
    """
    from clinic.inventory import service as inventory
    from clinic.inventory.models import Drug
    from clinic.locations import service as locations
    from clinic.locations.models import Location
    from clinic.patients.models import Patient
    from clinic.scheduling import service as scheduling
    from clinic.scheduling.models import Chair
    from clinic.visits import discharge as discharging
    from clinic.visits import dosing
    from clinic.visits import service as visits

    location = db.session.scalar(select(Location).where(Location.dea_registration == DEMO_DEA))
    first_email = f"{VISIT_STAGES[0][0].lower()}.{VISIT_STAGES[0][1].lower()}@example.org"
    if location is None or db.session.scalar(select(Patient.id).where(Patient.email == first_email)):
        return
    admin, desk = _user("admin@demo.clinic"), _user("frontdesk@demo.clinic")
    nurse, prescriber = _user("nurse@demo.clinic"), _user("prescriber@demo.clinic")
    witness = inventory.WitnessSignature("nurse2@demo.clinic", passwords["nurse2@demo.clinic"])
    tz = ZoneInfo(location.timezone)
    now = utcnow()
    today = today_at(location.timezone)

    def ago(minutes: int) -> datetime:
        return now - timedelta(minutes=minutes)

    _certify(admin, location, today)
    have = set(db.session.scalars(select(Chair.name).where(Chair.location_id == location.id)))
    for name in EXTRA_CHAIRS:
        if name not in have:
            scheduling.create_chair(actor=admin, location_id=location.id, name=name)
    safe = locations.list_storage_sites(location.id)[0]
    devices_drug = db.session.scalar(select(Drug).where(Drug.ndc == fixtures.SPRAVATO_28.ndc))
    vial_drug = db.session.scalar(select(Drug).where(Drug.ndc == fixtures.KETAMINE_10.ndc))  # 10 mg/mL, 20 mL
    assert devices_drug is not None
    assert vial_drug is not None
    devices = fixtures.create_receipt(
        nurse,
        storage_site_id=safe.id,
        drug_id=devices_drug.id,
        count=12,
        lot_number="SP7790",
        expires_on=date(today.year + 1, 9, 30),
        invoice_number="INV-40377",
        occurred_at=ago(300),
    ).containers
    vials = fixtures.create_receipt(
        nurse,
        storage_site_id=safe.id,
        drug_id=vial_drug.id,
        count=6,
        lot_number="KT1187",
        expires_on=date(today.year + 2, 3, 31),
        invoice_number="INV-40378",
        occurred_at=ago(300),
    ).containers
    device_ids = [c.id for c in devices]
    vial_ids = [c.id for c in vials]

    hours = dict(location.hours or {})
    locations.set_hours(actor=admin, location_id=location.id, hours=ALL_DAY)
    booked = []
    for first, last, protocol, stage, offset, kg in VISIT_STAGES:
        patient = fixtures.create_patient(
            desk,
            first_name=first,
            last_name=last,
            date_of_birth=date(1970 + len(first) * 3, 1 + len(last) % 12, 10 + len(first)),
            address="20 Demo St, Chicago IL",
            timezone=location.timezone,
            email=f"{first.lower()}.{last.lower()}@example.org",
            clinician=nurse,
            screen={},
            location_id=location.id,
            weight_g=kg * 1000,
            weighed_at=ago(24 * 60),
            rems_enrolled_on=today - timedelta(days=14) if protocol.startswith("esketamine") else None,
        )
        chair_minutes = int(scheduling.current_protocol(protocol).rules["chair_minutes"])
        series = fixtures.book_course(
            desk,
            patient_id=patient.id,
            protocol=protocol,
            location_id=location.id,
            prescriber_id=prescriber.id,
            start_on=today,
            preferred_time=_booked_time(now, offset, chair_minutes, tz),
        )
        booked.append((stage, offset, series.appointments[0].id))
    # the staged visits sit outside the normal hours on purpose (a clinic at any hour of the demo)
    locations.set_hours(actor=admin, location_id=location.id, hours=hours, strand=True)

    normal: dict[str, Any] = {"systolic": 124, "diastolic": 78, "heart_rate": 74, "spo2": 98, "sedation": 5}

    def vitals(appt: int, minutes_ago: int, **values: Any) -> None:
        visits.record_vitals(
            actor=nurse, appointment_id=appt, **{**normal, "dissociation": 0, **values}, taken_at=ago(minutes_ago)
        )

    def arrive(appt: int, minutes_ago: int, *, devices: bool) -> None:
        prep: dict[str, bool | None] | None = None
        if devices:
            prep = {"fasted_2h": True, "no_liquids_30min": True, "nasal_medicines_1h": True, "counselled": True}
        visits.check_in(
            actor=desk,
            appointment_id=appt,
            ride_home_arranged=True,
            ride_contact="Family member, 312-555-0199",
            occurred_at=ago(minutes_ago),
            preparation=prep,
        )
        vitals(appt, minutes_ago - 5)

    def spray(appt: int, minutes_ago: int) -> None:
        """56 mg: two 28 mg devices, 5 minutes apart."""
        ids = [device_ids.pop(0), device_ids.pop(0)]
        dosing.record_dose(
            actor=nurse,
            appointment_id=appt,
            req=dosing.DoseRequest(container_ids=ids, device_times=[ago(minutes_ago), ago(minutes_ago - 5)]),
            client_addr="127.0.0.1",
        )

    def infuse(appt: int, minutes_ago: int, *, extra_ug: int = 0) -> None:
        visit = visits.visit_for(appt, lock=False)[1]
        assert visit is not None
        dose_ug = visits.dose_bounds(visit, at=ago(minutes_ago)).target_ug
        dosing.record_dose(
            actor=nurse,
            appointment_id=appt,
            req=dosing.DoseRequest(
                container_ids=[vial_ids.pop(0)],
                administered_at=ago(minutes_ago),
                drawn_ug=dose_ug + extra_ug,
                witness=witness if extra_ug else None,
            ),
            client_addr="127.0.0.1",
        )

    def discharge(appt: int, minutes_ago: int) -> None:
        discharging.discharge(
            actor=nurse,
            appointment_id=appt,
            ride_confirmed=True,
            clinically_stable=True,
            sedation_resolved=True,
            dissociation_resolved=True,
            occurred_at=ago(minutes_ago),
        )

    for stage, offset, appt in booked:
        start = -offset  # minutes ago the visit was booked to start (negative: still to come)
        if stage == "arriving":
            continue
        if stage == "checked_in":
            arrive(appt, 10, devices=True)
        elif stage == "held":
            arrive(appt, 20, devices=False)
            vitals(appt, 12, systolic=172, diastolic=104, heart_rate=96)  # above 160/100: held
        elif stage == "infusing":
            arrive(appt, start, devices=False)
            infuse(appt, 30, extra_ug=2_000)  # 2 mg drawn too many: wasted, witnessed
            vitals(appt, 15)
        elif stage == "observing":
            arrive(appt, start, devices=True)
            spray(appt, 60)  # the 40-minute vitals were due 20 minutes ago: overdue on the board
        elif stage == "observing_iv":
            arrive(appt, start, devices=False)
            infuse(appt, 85)
            for minutes in (70, 55):
                vitals(appt, minutes)
            dosing.end_infusion(actor=nurse, appointment_id=appt, ended_at=ago(45))
            vitals(appt, 45)
            vitals(appt, 25, heart_rate=88)
        elif stage == "ready":
            arrive(appt, start, devices=True)
            spray(appt, 130)
            vitals(appt, 90, systolic=136, diastolic=86)
            vitals(appt, 10)
            vitals(appt, 4)
        elif stage == "discharged":
            arrive(appt, start, devices=True)
            spray(appt, 180)
            vitals(appt, 140, systolic=138, diastolic=88)
            vitals(appt, 60)
            discharge(appt, 55)
        elif stage == "discharged_iv":
            arrive(appt, start, devices=False)
            infuse(appt, 190)
            for minutes in (175, 160):
                vitals(appt, minutes)
            dosing.end_infusion(actor=nurse, appointment_id=appt, ended_at=ago(150))
            for minutes in (150, 130):
                vitals(appt, minutes)
            visit = visits.visit_for(appt, lock=False)[1]
            assert visit is not None
            (item,) = dosing.unresolved_remainders(visit)
            dosing.resolve_remainder(
                actor=nurse,
                appointment_id=appt,
                container_id=item.container_id,
                action="wasted",
                measured_ug=None,
                witness=witness,
                client_addr="127.0.0.1",
                occurred_at=ago(140),
            )
            vitals(appt, 88)
            discharge(appt, 85)  # an hour after the infusion ended


# --- reminders in every state ------------------------------------------------------------------


def _seed_reminders() -> None:
    """Reminders in every state (pending from the bookings above; one sent, one failed, one
    cancelled), and two due in a minute, so the worker of ``make run`` is seen sending them (a
    patient's to the console outbox, a staff notice to the bell)."""
    from datetime import timedelta

    from sqlalchemy import update

    from clinic.inventory.counts import next_inventory_due_on
    from clinic.locations.models import Location
    from clinic.patients.models import Patient
    from clinic.reminders import planning
    from clinic.reminders import service as reminders
    from clinic.reminders.models import Notice, Reminder

    location = db.session.scalar(select(Location).where(Location.dea_registration == DEMO_DEA))
    if location is None or db.session.scalar(select(Reminder.id).where(Reminder.dedupe_key.like("demo:%"))):
        return
    reminders.plan_calendars()
    waiting = list(
        db.session.scalars(
            select(Reminder)
            .where(Reminder.location_id == location.id, Reminder.kind == "appointment", Reminder.status == "pending")
            .order_by(Reminder.due_at)
            .limit(3)
        )
    )
    if len(waiting) < 3:
        return
    now = utcnow()
    sent, failed, cancelled = waiting
    first = sent
    db.session.execute(
        update(Reminder)
        .where(Reminder.id == sent.id)
        .values(
            status="sent",
            sent_at=now - timedelta(hours=20),
            attempts=1,
            transport="console",
            provider_ref=f"<reminder-{sent.id}@demo.clinic>",
        )
    )
    db.session.execute(
        update(Reminder)
        .where(Reminder.id == failed.id)
        .values(status="failed", attempts=5, last_error="SMTP 550", next_attempt_at=now - timedelta(hours=2))
    )
    db.session.add(
        Notice(
            location_id=location.id,
            role="front_desk",
            kind="reminder_failed",
            title=f"Reminder #{failed.id} could not be delivered",
            body="An appointment reminder by email failed after 5 attempt(s): SMTP 550. "
            "Retry or cancel it in the outbox.",
            link="/reminders/outbox?status=failed",
        )
    )
    reminders.cancel(actor=_user("frontdesk@demo.clinic"), reminder_id=cancelled.id, reason="patient asked by phone")
    soon = now + timedelta(minutes=1)
    patient_id, appt_id = first.patient_id, first.appointment_id
    patient = db.session.get(Patient, patient_id)
    inventory_due = next_inventory_due_on(location.id)
    assert patient is not None
    assert inventory_due is not None
    planning.write(
        [
            planning.Plan(
                kind="course_completion",
                location_id=location.id,
                planned_for=soon,
                key=f"demo:patient:{patient_id}",
                tz=patient.timezone,
                channel="email",
                patient_id=patient_id,
                series_id=first.series_id,
                appointment_id=appt_id,
            ),
            planning.Plan(
                kind="inventory_due",
                location_id=location.id,
                planned_for=soon,
                key=f"demo:staff:{location.id}",
                tz=location.timezone,
                audience="role",
                role="nurse",
                params={
                    "due_on": inventory_due.isoformat(),
                    "days_left": (inventory_due - today_at(location.timezone)).days,
                },
            ),
        ]
    )
    db.session.flush()
