"""Reminder pages: the staff outbox, a patient's reminders on the chart, the location's rules with
a preview of each message, and the staff inbox behind the bell. Thin: parse, one service call,
render or redirect."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, url_for

from clinic.auth import scope
from clinic.auth.policy import current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError, NotFound
from clinic.core.fields import id_arg
from clinic.extensions import db
from clinic.locations.models import Location
from clinic.patients.models import Patient
from clinic.reminders import messages, rules, service
from clinic.reminders.models import ReminderStatus
from clinic.reminders.schemas import CancelReminderSchema, ReminderSettingsSchema
from clinic.web.forms import CHECKED, refused, same_site_path

bp = Blueprint("reminders_ui", __name__, template_folder="templates")

#: rules shown on the settings page: (key, label, fields as (name, label, kind))
RULE_FORM: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        "appointment",
        "Before each visit (SPR-09 preparation, SPR-16 ride home)",
        [("lead_hours", "Hours before", "list")],
    ),
    ("next_day_checkin", "Next-day check-in after a dose (SPR-16)", [("at", "At (patient's time)", "time")]),
    ("missed_follow_up", "Follow up a missed visit (SPR-23)", [("business_days", "Within business days", "int")]),
    ("reviews", "Week-4 benefit and end-of-course reviews for the prescriber (SPR-21, IVK-08)", []),
    ("course_completion", "Course completed (patient)", []),
    (
        "booster_due",
        "Booster due (IVK-07)",
        [("interval_days", "Every (days)", "int"), ("lead_days", "Remind days ahead", "int")],
    ),
    ("shift_count", "Shift count before closing", [("minutes_before_close", "Minutes before closing", "int")]),
    ("inventory_due", "Full inventory due (DEA-15) and overdue", [("days_before", "Days before", "list")]),
    ("lot_expiring", "Lots expiring", [("days_before", "Days before", "int")]),
    (
        "form_106",
        "DEA notice and Form 106 deadlines (DEA-31/32)",
        [("filing_days_before", "Days before filing", "list")],
    ),
    ("pmf", "REMS monitoring form (SPR-18)", [("due_day", "Remind on day", "int")]),
]


def _location_from_args() -> tuple[Location | None, list[Location]]:
    locations = scope.my_locations(current_actor())
    wanted = id_arg(request.args.get("location_id") or request.form.get("location_id"))
    location = next((loc for loc in locations if loc.id == wanted), locations[0] if locations else None)
    return location, locations


# --- the outbox ----------------------------------------------------------------------------------


@bp.get("/reminders/outbox")
@require("reminders.view")
def outbox() -> Any:
    status = request.args.get("status") or "failed"
    if status not in {s.value for s in ReminderStatus}:
        status = "failed"
    location, locations = _location_from_args()
    # SYS-11: a user of no location has no location to pick; None would mean every location's
    location_id, members = (location.id if location else None), scope.member_location_ids(current_actor())
    rows = service.list_reminders(status=status, location_id=location_id, location_ids=members, limit=300)
    return render_template(
        "reminders/outbox.html",
        rows=rows,
        status=status,
        statuses=[s.value for s in ReminderStatus],
        location=location,
        locations=locations,
        counts={
            s.value: service.count_reminders(status=s.value, location_id=location_id, location_ids=members)
            for s in (ReminderStatus.failed, ReminderStatus.pending)
        },
    )


def _back() -> Any:
    return redirect(same_site_path(request.form.get("next")) or url_for(".outbox", status="failed"))


@bp.post("/reminders/<int:reminder_id>/retry")
@require("reminders.manage")
def retry(reminder_id: int) -> Any:
    try:
        tx.attempt(lambda: service.retry(actor=current_actor(), reminder_id=reminder_id))
    except DomainError as exc:
        flash(exc.detail, "error")
        return _back()
    flash(f"Reminder #{reminder_id} is back in the outbox.", "success")
    return _back()


@bp.post("/reminders/<int:reminder_id>/cancel")
@require("reminders.manage")
def cancel(reminder_id: int) -> Any:
    try:
        args = CancelReminderSchema().load({"reason": request.form.get("reason", "")})
        tx.attempt(lambda: service.cancel(actor=current_actor(), reminder_id=reminder_id, reason=args["reason"]))
    except ma.ValidationError:
        flash("Give a reason to cancel a reminder.", "error")
        return _back()
    except DomainError as exc:
        flash(exc.detail, "error")
        return _back()
    flash(f"Reminder #{reminder_id} cancelled.", "success")
    return _back()


# --- a patient's reminders (a section of the chart, loaded into it) -------------------------------


@bp.get("/reminders/patients/<int:patient_id>")
@require("reminders.view")
def patient_reminders(patient_id: int) -> Any:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient")
    rows = service.list_reminders(
        patient_id=patient_id, limit=500, location_ids=scope.member_location_ids(current_actor())
    )
    template = "reminders/_patient.html" if request.headers.get("HX-Request") else "reminders/patient.html"
    return render_template(template, patient=patient, rows=rows, opted_out=service.opt_outs(patient_id))


@bp.post("/reminders/patients/<int:patient_id>/opt-outs")
@require("patients.update")
def opt_outs(patient_id: int) -> Any:
    channels = [c for c in ("email", "sms") if request.form.get(f"opt_out_{c}") in CHECKED]
    tx.attempt(lambda: service.set_opt_outs(actor=current_actor(), patient_id=patient_id, channels=channels))
    flash("Reminder preferences saved.", "success")
    return redirect(url_for(".patient_reminders", patient_id=patient_id))


# --- settings -------------------------------------------------------------------------------------


def _settings_payload(form: Any) -> dict[str, Any]:
    """The form as the API's settings body: every rule's toggle and fields, the quiet hours."""
    body: dict[str, Any] = {
        "quiet_hours": {"start": form.get("quiet_start") or None, "end": form.get("quiet_end") or None},
        "staff_send_time": form.get("staff_send_time", ""),
    }
    for key, _label, fields in RULE_FORM:
        rule: dict[str, Any] = {"enabled": form.get(f"{key}.enabled") in CHECKED}
        for name, _flabel, kind in fields:
            raw = (form.get(f"{key}.{name}") or "").strip()
            if not raw and kind != "list":
                continue  # left empty: the default
            if kind == "int":
                rule[name] = int(raw) if raw.lstrip("-").isdigit() else raw
            elif kind == "list":
                parts = [p.strip() for p in raw.split(",") if p.strip()]
                rule[name] = [int(p) if p.lstrip("-").isdigit() else p for p in parts]
            else:
                rule[name] = raw
        body[key] = rule
    return body


def _settings_page(location: Location | None, locations: list[Location], **extra: Any) -> Any:
    values = service.get_settings(location.id) if location else rules.merged(None)
    previews = {kind: messages.preview(kind, location) for kind in rules.KINDS} if location else {}
    return render_template(
        "reminders/settings.html",
        location=location,
        locations=locations,
        values=values,
        rule_form=RULE_FORM,
        previews=previews,
        patient_kinds=rules.PATIENT_KINDS,
        **extra,
    )


@bp.get("/reminders/settings")
@require("reminders.view")
def settings() -> Any:
    location, locations = _location_from_args()
    return _settings_page(location, locations, errors={})


@bp.post("/reminders/settings")
@require("reminders.configure")
def save_settings() -> Any:
    location, locations = _location_from_args()
    if location is None:
        raise NotFound("No such location")
    try:
        args = ReminderSettingsSchema().load(_settings_payload(request.form))
        tx.attempt(lambda: service.update_settings(actor=current_actor(), location_id=location.id, values=args))
    except (ma.ValidationError, DomainError) as exc:
        return refused(
            "reminders/settings.html",
            exc,
            location=location,
            locations=locations,
            values=rules.merged(None) | {},
            rule_form=RULE_FORM,
            previews={},
            patient_kinds=rules.PATIENT_KINDS,
        )
    flash("Reminder rules saved.", "success")
    return redirect(url_for(".settings", location_id=location.id))


# --- the inbox ------------------------------------------------------------------------------------


@bp.get("/notices")
@require("notices.view")
def notices() -> Any:
    return render_template("reminders/notices.html", rows=service.inbox(current_actor()))


@bp.post("/notices/read")
@require("notices.view")
def read_notices() -> Any:
    notice_id = id_arg(request.form.get("notice_id"))
    tx.attempt(lambda: service.mark_read(actor=current_actor(), notice_id=notice_id))
    return redirect(url_for(".notices"))
