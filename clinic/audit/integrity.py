"""The daily integrity check: every ledger chain and the sealed access log and audit trail.

A break raises an in-app notice to the clinic's admins and is stored, so the auditor's page shows
when the records were last proved whole and what was found (SYS-05, HIP-02).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask
from sqlalchemy import select

from clinic.audit.models import IntegrityCheck
from clinic.core.time import utcnow
from clinic.extensions import db

#: a ledger's problem, as ``run_check`` words it: the location's id first
_LEDGER_OF = re.compile(r"^location (\d+): ")

#: only serves clinic/audit/templates (the partial a page includes); no routes of its own
bp = Blueprint("audit_integrity", __name__, template_folder="templates")


def run_check() -> IntegrityCheck:
    """Verify everything now; store the result; raise a notice to admins on any break."""
    from clinic.audit import seals
    from clinic.inventory import integrity as ledger_integrity

    chains = ledger_integrity.verify_all()
    logs = seals.verify_all()
    problems = [f"location {c.location_id}: ledger broken at seq {c.bad_seq}: {c.problem}" for c in chains if not c.ok]
    problems += [str(r.problem) for r in logs if not r.ok]
    db.session.rollback()  # the walks read with expunged rows; start the write afresh
    check = IntegrityCheck(
        checked_at=utcnow(),
        ok=not problems,
        problems=problems,
        summary={
            "chains": len(chains),
            "entries": sum(c.entries for c in chains),
            "sealed_rows": {r.stream: r.rows for r in logs},
            "unsealed_rows": {r.stream: r.unsealed for r in logs},
        },
    )
    db.session.add(check)
    if problems:
        _alert(problems)
    db.session.flush()
    return check


def _alert(problems: list[str]) -> None:
    from clinic.locations.models import Location
    from clinic.reminders.models import Notice

    # A notice belongs to a location; admins see every location's, so one is enough.
    location_id = db.session.scalar(select(Location.id).order_by(Location.id).limit(1))
    if location_id is None:
        return
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    db.session.add(
        Notice(
            location_id=location_id,
            role="admin",
            kind="integrity_break",
            title="The daily integrity check found a break",
            body=f"{problems[0][:1500]}{more}. Run `clinic ledger verify` and tell the compliance officer.",
            link="/inventory/ledger",
        )
    )


def last_result() -> dict[str, Any] | None:
    """The latest check: when, whether everything verified, and what was found (for the auditor's page).

    In a request, a ledger's problem is shown only to whom reads that location (SYS-13: another
    registrant's ledger, even broken, is not theirs to read); the logs' are the whole clinic's.
    """
    from clinic.auth import scope

    check = db.session.scalar(
        select(IntegrityCheck).order_by(IntegrityCheck.checked_at.desc(), IntegrityCheck.id.desc()).limit(1)
    )
    if check is None:
        return None
    checked_at: datetime = check.checked_at
    problems = list(check.problems)
    readable = scope.member_location_ids(scope.acting_user())
    if readable is not None:
        problems = [p for p in problems if (m := _LEDGER_OF.match(p)) is None or int(m.group(1)) in readable]
    ok = check.ok or not problems
    return {
        "checked_at": checked_at,
        "ok": ok,
        "narrowed": readable is not None,
        "problems": problems,
        "summary": dict(check.summary),
    }


def init_app(app: Flask) -> None:
    from clinic.audit.retention import install_orm_guard

    app.register_blueprint(bp)
    install_orm_guard()
    app.jinja_env.globals["last_integrity_check"] = last_result
