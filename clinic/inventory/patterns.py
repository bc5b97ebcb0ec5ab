"""DEA-35: a continuing pattern of small unexplained shortages is significant.

The pattern counts shortages still unexplained (open, or written off by an adjustment without a
cause found); an explained one (a miscount: the books stand) or one escalated to a loss (already
reported) does not. Reaching the profile's count within its window raises one alert, which a
prescriber or admin resolves with a documented decision; shortages from before it do not count again.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory.errors import AlreadyRecorded
from clinic.inventory.models import AlertDecision, Discrepancy, DiscrepancyAlert, DiscrepancyStatus
from clinic.locations.models import Location

UNEXPLAINED = (DiscrepancyStatus.open.value, DiscrepancyStatus.adjusted.value)


def open_alert(location_id: int) -> DiscrepancyAlert | None:
    return db.session.scalar(
        select(DiscrepancyAlert)
        .where(DiscrepancyAlert.location_id == location_id, DiscrepancyAlert.resolved_at.is_(None))
        .order_by(DiscrepancyAlert.id)
        .limit(1)
    )


def unexplained_shortages(location: Location) -> list[int]:
    rule = location.rule("small_discrepancy_pattern")
    since = utcnow() - timedelta(days=int(rule["days"]))
    last = db.session.scalar(
        select(DiscrepancyAlert.raised_at)
        .where(DiscrepancyAlert.location_id == location.id, DiscrepancyAlert.resolved_at.is_not(None))
        .order_by(DiscrepancyAlert.raised_at.desc())
        .limit(1)
    )
    if last is not None and last > since:
        since = last
    return list(
        db.session.scalars(
            select(Discrepancy.id)
            .where(
                Discrepancy.location_id == location.id,
                Discrepancy.created_at > since,
                Discrepancy.counted_ug < Discrepancy.expected_ug,
                Discrepancy.status.in_(UNEXPLAINED),
            )
            .order_by(Discrepancy.id)
        )
    )


def raise_if_pattern(location_id: int) -> DiscrepancyAlert | None:
    """DEA-35, after a count (under the chain lock, so two counts cannot both raise one alert)."""
    if open_alert(location_id) is not None:
        return None
    location = db.session.get(Location, location_id)
    assert location is not None
    rule = location.rule("small_discrepancy_pattern")
    shortages = unexplained_shortages(location)
    if len(shortages) < int(rule["count"]):
        return None
    alert = DiscrepancyAlert(location_id=location_id, raised_at=utcnow(), discrepancy_ids=shortages, rule=dict(rule))
    db.session.add(alert)
    db.session.flush()
    audit.record(
        actor=None,
        tag=Tag.inventory_discrepancy_alert_raise,
        subject=("discrepancy_alert", alert.id),
        data={"discrepancy_ids": shortages},
    )
    return alert


def small_discrepancy_pattern(location_id: int) -> bool:
    if db.session.get(Location, location_id) is None:
        raise NotFound("No such location")
    return open_alert(location_id) is not None


def resolve_alert(*, actor: User, alert_id: int, decision: str, reason: str) -> DiscrepancyAlert:
    """A prescriber's or admin's documented decision on a pattern (DEA-35)."""
    if decision not in {d.value for d in AlertDecision}:
        raise ValidationFailed(errors={"decision": ["One of: reported, not_significant."]})
    if not reason.strip():
        raise ValidationFailed(errors={"reason": ["Document the decision."]})
    alert = db.session.scalar(
        select(DiscrepancyAlert)
        .where(DiscrepancyAlert.id == alert_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if alert is None:
        raise NotFound("No such alert")
    if alert.resolved_at is not None:
        raise AlreadyRecorded("This alert is already resolved.", errors={"decision": ["Already resolved."]})
    alert.decision, alert.reason = decision, reason.strip()
    alert.resolved_by_id, alert.resolved_at = actor.id, utcnow()
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.inventory_discrepancy_alert_resolve,
        subject=("discrepancy_alert", alert.id),
        data={"decision": decision},
    )
    return alert
