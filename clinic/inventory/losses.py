"""Theft, loss, breakage and spill, and the DEA Form 106 drafts that theft and loss open (DEA-31/32)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.audit import service as audit
from clinic.audit.models import AuditEvent
from clinic.audit.tags import loss_report_tag
from clinic.auth.models import User
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory import checks
from clinic.inventory.catalog import get_container
from clinic.inventory.errors import AlreadyRecorded
from clinic.inventory.ledger import append, check_time, location_day, lock_chain, lock_container, require_positive
from clinic.inventory.models import Container, EntryKind, LedgerEntry, LossReport
from clinic.inventory.witness import WitnessSignature, verify_witness
from clinic.locations.calendar import add_business_days
from clinic.locations.models import Location
from clinic.reminders import service as reminders

logger = logging.getLogger(__name__)

REPORTABLE_LOSS_KINDS = frozenset({"theft", "loss"})
#: stock seen destroyed: witnessed as a waste is
WITNESSED_LOSS_KINDS = frozenset({"breakage", "spill"})


def record_loss(
    *,
    actor: User,
    container_id: int,
    quantity_ug: int,
    kind: str,
    description: str,
    occurred_at: datetime | None = None,
    discovered_at: datetime | None = None,
    late_entry_reason: str | None = None,
    witness: WitnessSignature | None = None,
    client_addr: str = "",
) -> LedgerEntry:
    """Theft, loss, breakage or spill. Theft and loss open a DEA Form 106 draft with its deadlines.

    A breakage or a spill is stock destroyed in front of someone, like a waste: it is witnessed
    where the jurisdiction has waste witnessed (DEA-40/42). A theft or an unexplained loss is
    reported, not witnessed: no one saw it go.
    """
    require_positive(quantity_ug)
    at = check_time(occurred_at)
    found = check_time(discovered_at, "discovered_at") if discovered_at else utcnow()
    checks.not_before(found, at, "discovered_at", "the loss occurred (occurred_at)")
    container = get_container(container_id)
    location = db.session.get(Location, container.location_id)
    assert location is not None
    signed_by = None
    if kind in WITNESSED_LOSS_KINDS and (location.rule("waste_witness_required") or witness is not None):
        signed_by = verify_witness(witness, actor=actor, location_id=location.id, client_addr=client_addr)
    chain = lock_chain(container.location_id)
    container = lock_container(container_id)
    late = checks.when(
        chain=chain,
        at=at,
        field="occurred_at",
        container_ids=(container.id,),
        late_reason=late_entry_reason,
    )
    entry = append(
        chain=chain,
        kind=EntryKind.loss,
        actor=actor,
        occurred_at=at,
        container=container,
        delta_ug=-quantity_ug,
        reason=description,
        witness=signed_by,
        details={"loss_kind": kind, **late},
    )
    if kind in REPORTABLE_LOSS_KINDS:
        _open_form_106(entry=entry, container=container, kind=kind, discovered_at=found, quantity_ug=quantity_ug)
    return entry


def _open_form_106(
    *, entry: LedgerEntry, container: Container, kind: str, discovered_at: datetime, quantity_ug: int
) -> LossReport:
    location = db.session.get(Location, container.location_id)
    assert location is not None
    tz = ZoneInfo(location.timezone)
    local_day = discovered_at.astimezone(tz).date()
    # DEA-31: written notice within one business day of discovery (end of that local day); the
    # DEA's field office keeps federal holidays.
    notice_day = add_business_days(local_day, 1)
    # DEA-37: a state board's own deadline, in calendar days from discovery (a theft may be sooner).
    board_days = location.rule("board_theft_notice_days") if kind == "theft" else None
    if board_days is None:
        board_days = location.rule("board_loss_notice_days")
    notice_due = datetime.combine(notice_day, time(23, 59, 59), tzinfo=tz).astimezone(UTC)
    drug = container.drug
    report = LossReport(
        location_id=location.id,
        entry_id=entry.id,
        kind=kind,
        discovered_at=discovered_at,
        notice_due_at=notice_due,
        filing_due_on=local_day + timedelta(days=45),  # DEA-32
        board_notice_due_on=local_day + timedelta(days=int(board_days)) if board_days is not None else None,
        form={
            "registrant_name": location.name,
            "registrant_address": location.address,
            "dea_registration": location.dea_registration,
            "date_of_loss": local_day.isoformat(),
            "type": kind,
            "products": [
                {"ndc": drug.ndc, "name": drug.name, "form": drug.form, "quantity_lost_mg": format_mg(quantity_ug)}
            ],
        },
    )
    db.session.add(report)
    db.session.flush()
    reminders.loss_reported(report)  # DEA-31/32 deadlines, in this transaction
    return report


def list_loss_reports(
    location_id: int | None = None, *, location_ids: Collection[int] | None = None
) -> list[LossReport]:
    q = select(LossReport).order_by(LossReport.discovered_at.desc(), LossReport.id.desc())
    if location_id is not None:
        q = q.where(LossReport.location_id == location_id)
    if location_ids is not None:
        q = q.where(LossReport.location_id.in_(sorted(location_ids)))
    return list(db.session.scalars(q))


def mark_loss_report(*, actor: User, report_id: int, step: str, occurred_at: datetime | None = None) -> LossReport:
    """Record that DEA was notified in writing (DEA-31) or that Form 106 was filed (DEA-32)."""
    at = check_time(occurred_at)
    if step not in ("notified", "filed", "board_notified"):
        raise ValidationFailed(errors={"step": ["One of: notified, filed, board_notified."]})
    # Locked and read afresh: two people recording the same step at once, one of them is told (409).
    report = db.session.scalar(
        select(LossReport).where(LossReport.id == report_id).with_for_update().execution_options(populate_existing=True)
    )
    if report is None:
        raise NotFound("No such loss report")
    if at < report.discovered_at:
        raise ValidationFailed(errors={"occurred_at": ["Cannot be before the loss was discovered."]})
    if step == "notified":
        if report.notified_at is not None:
            raise AlreadyRecorded("The notice is already recorded.", errors={"step": ["Already recorded."]})
        report.notified_at = at
    elif step == "filed":
        if report.filed_at is not None:
            raise AlreadyRecorded("The filing is already recorded.", errors={"step": ["Already recorded."]})
        report.filed_at = at
    else:
        if report.board_notice_due_on is None:
            raise ValidationFailed(errors={"step": ["This location's board has no notice deadline of its own."]})
        if report.board_notified_at is not None:
            raise AlreadyRecorded("The board notice is already recorded.", errors={"step": ["Already recorded."]})
        report.board_notified_at = at
    audit.record(
        actor=actor,
        tag=loss_report_tag(step),
        subject=("loss_report", report.id),
        data={"at": at.isoformat()},
    )
    db.session.flush()
    reminders.loss_report_marked(report, step)
    return report


def overdue_loss_reports(now: datetime) -> list[LossReport]:
    return list(
        db.session.scalars(
            select(LossReport).where(
                ((LossReport.notified_at.is_(None)) & (LossReport.notice_due_at < now))
                # A local day (judged per location below); no zone's date is ahead of UTC's in 14 hours.
                | ((LossReport.filed_at.is_(None)) & (LossReport.filing_due_on < (now + timedelta(hours=14)).date()))
                | (
                    (LossReport.board_notified_at.is_(None))
                    & (LossReport.board_notice_due_on < (now + timedelta(hours=14)).date())
                )
            )
        )
    )


def flag_overdue_loss_reports(now: datetime) -> int:
    """Beat task body: one audit alert per overdue report and deadline, never repeated."""
    flagged = 0
    for report in overdue_loss_reports(now):
        deadlines = (
            ("notice", report.notified_at is None and report.notice_due_at < now, report.notice_due_at.isoformat()),
            (
                "filing",
                report.filed_at is None and report.filing_due_on < location_day(report.location_id, now),
                report.filing_due_on.isoformat(),
            ),
            (  # its own task: the board's deadline is raised on its own, beside the DEA's
                "board_notice",
                report.board_notice_due_on is not None
                and report.board_notified_at is None
                and report.board_notice_due_on < location_day(report.location_id, now),
                report.board_notice_due_on.isoformat() if report.board_notice_due_on else "",
            ),
        )
        for deadline, late, due in deadlines:
            tag = loss_report_tag(f"{deadline}_overdue")
            if (
                not late
                or db.session.scalar(
                    select(AuditEvent.id).where(
                        AuditEvent.tag == tag,
                        AuditEvent.subject_type == "loss_report",
                        AuditEvent.subject_id == report.id,
                    )
                )
                is not None
            ):
                continue
            audit.record(actor=None, tag=tag, subject=("loss_report", report.id), data={"due": due})
            logger.warning("loss report %s: %s deadline passed", report.id, deadline)
            flagged += 1
    db.session.flush()
    return flagged
