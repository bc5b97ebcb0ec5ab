from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template

from clinic.auth.policy import current_actor, public, require
from clinic.system import service as system

bp = Blueprint("web_ui", __name__, template_folder="templates")


@bp.route("/")
@require("dashboard.view")
def dashboard() -> Any:
    return render_template("web/dashboard.html", user=current_actor(), scheduler_stale=system.scheduler_is_stale())


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
