from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from clinic.auth.policy import public
from clinic.scheduling import calendar

bp = Blueprint("scheduling_ui", __name__)


@bp.route("/calendar/<token>.ics")
@public
def calendar_feed(token: str) -> Any:
    """The token in the URL is the credential; a revoked or unknown one is a 404."""
    return Response(calendar.render(token), mimetype="text/calendar", headers={"Cache-Control": "private, max-age=300"})
