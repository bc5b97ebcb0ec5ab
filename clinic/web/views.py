from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request

from clinic.auth.models import Role
from clinic.auth.policy import current_actor, public, require
from clinic.core.fields import id_arg
from clinic.system import service as system
from clinic.visits import pages as visit_pages

bp = Blueprint("web_ui", __name__, template_folder="templates")

#: what each role's Today page gathers (clinic.visits.pages.today): the front desk the arrivals and
#: check-ins, the nurse the chairs and who is due what, the prescriber holds, orders and reviews,
#: the admin counts and deadlines; auditors see no visits at all
TODAY_SECTIONS: dict[Role, set[str]] = {
    Role.front_desk: {"visits"},
    Role.nurse: {"visits", "board"},
    Role.prescriber: {"visits", "board", "prescriber"},
    Role.admin: {"visits", "admin"},
    Role.auditor: set(),
}


@bp.route("/")
@require("dashboard.view")
def dashboard() -> Any:
    actor = current_actor()
    sections = TODAY_SECTIONS.get(actor.role_enum, set())
    today = (
        visit_pages.today(request.args.get("location_id", type=id_arg), actor=actor, sections=sections)
        if sections
        else None
    )
    return render_template(
        "web/dashboard.html",
        user=actor,
        scheduler_stale=system.scheduler_warning(),
        today=today,
        sections=sections,
    )


@bp.route("/health")
@public
def health() -> Any:
    database = system.database_ok()
    broker = system.broker_ok()
    body = {
        "status": "ok" if database and broker else "degraded",
        "database": "ok" if database else "unavailable",
        "broker": "ok" if broker else "unavailable",
    }
    return jsonify(body), 200 if database and broker else 503


@bp.route("/health/live")
@public
def health_live() -> Any:
    """The process answers: nothing else is checked, so a restart is the cure when this fails."""
    return jsonify({"status": "ok"})


@bp.route("/health/ready")
@public
def health_ready() -> Any:
    """Ready for traffic: database reachable, schema at this code's head, broker reachable, scheduler
    heartbeat fresh. 503 names what is not (never how it is configured)."""
    checks = system.readiness()
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", **checks}), 200 if ready else 503
