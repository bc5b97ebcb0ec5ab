"""Calendar-feed links on a patient's page and on a user's own page: create (the URL is shown once,
with a copy button: only its hash is kept), list the live ones, revoke. Same services and the same
permissions as the API (scheduling.book for a patient's, self.view for one's own)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy import select

from clinic.auth.policy import current_actor, require
from clinic.core import tx
from clinic.extensions import db
from clinic.patients import service as patients
from clinic.scheduling import calendar
from clinic.scheduling.models import CalendarFeed
from clinic.scheduling.views import bp


def _live(**owner: int) -> list[CalendarFeed]:
    where = [getattr(CalendarFeed, k) == v for k, v in owner.items()]
    return list(
        db.session.scalars(
            select(CalendarFeed).where(*where, CalendarFeed.revoked_at.is_(None)).order_by(CalendarFeed.id)
        )
    )


def _url(raw: str) -> str:
    return url_for("scheduling_ui.calendar_feed", token=raw, _external=True)


# --- a patient's feeds ---------------------------------------------------------------------------------


@bp.get("/patients/<int:patient_id>/calendar-feeds")
@require("scheduling.book")
def patient_feeds(patient_id: int) -> Any:
    patient = patients.get_patient(patient_id)
    return render_template("scheduling/feeds.html", patient=patient, feeds=_live(patient_id=patient_id), new_url=None)


@bp.post("/patients/<int:patient_id>/calendar-feeds")
@require("scheduling.book")
def create_patient_feed(patient_id: int) -> Any:
    patient = patients.get_patient(patient_id)
    feed, raw = tx.attempt(lambda: calendar.create_feed(actor=current_actor(), patient_id=patient_id))
    return render_template(
        "scheduling/feeds.html", patient=patient, feeds=_live(patient_id=patient_id), new_url=_url(raw), new_id=feed.id
    ), 201


@bp.post("/patients/<int:patient_id>/calendar-feeds/<int:feed_id>/revoke")
@require("scheduling.book")
def revoke_patient_feed(patient_id: int, feed_id: int) -> Any:
    if not any(f.id == feed_id for f in _live(patient_id=patient_id)):
        abort(404)
    tx.attempt(lambda: calendar.revoke_feed(actor=current_actor(), feed_id=feed_id))
    flash(f"Calendar link #{feed_id} revoked: it no longer opens.", "success")
    return redirect(url_for(".patient_feeds", patient_id=patient_id))


# --- one's own feeds -----------------------------------------------------------------------------------


@bp.get("/me/calendar-feeds")
@require("self.view")
def my_feeds() -> Any:
    actor = current_actor()
    return render_template("scheduling/feeds.html", patient=None, feeds=_live(user_id=actor.id), new_url=None)


@bp.post("/me/calendar-feeds")
@require("self.view")
def create_my_feed() -> Any:
    actor = current_actor()
    feed, raw = tx.attempt(lambda: calendar.create_feed(actor=actor, user_id=actor.id))
    return render_template(
        "scheduling/feeds.html", patient=None, feeds=_live(user_id=actor.id), new_url=_url(raw), new_id=feed.id
    ), 201


@bp.post("/me/calendar-feeds/<int:feed_id>/revoke")
@require("self.view")
def revoke_my_feed(feed_id: int) -> Any:
    actor = current_actor()
    if not any(f.id == feed_id for f in _live(user_id=actor.id)):  # only one's own
        abort(404)
    tx.attempt(lambda: calendar.revoke_feed(actor=actor, feed_id=feed_id))
    flash(f"Calendar link #{feed_id} revoked: it no longer opens.", "success")
    return redirect(url_for(".my_feeds"))
