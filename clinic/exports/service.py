"""Auditor exports: request, run (inline when small, else a Celery task), list, and the accounting
of disclosures they make (DEA-12, HIP-01, HIP-07..10, HIP-15, SYS-05).

An export reads and changes no record: it writes its own job row, the audit and access log rows
that say it happened, and for an outside agency one accounting entry per patient it disclosed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth.models import User
from clinic.auth.scope import NotAMember, member_location_ids, readable_location_ids
from clinic.core import tx
from clinic.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from clinic.core.time import utcnow
from clinic.exports import verifier as proof
from clinic.exports import writer
from clinic.exports.models import NOT_ACCOUNTED, Disclosure, Export, ExportStatus, PurposeKind
from clinic.extensions import db
from clinic.inventory.models import Drug, LedgerEntry
from clinic.locations.models import Location
from clinic.patients.models import Patient

logger = logging.getLogger(__name__)

SUFFIX = {"csv": "csv", "jsonl": "jsonl", "pdf": "pdf"}


def export_dir() -> Path:
    return Path(current_app.config.get("EXPORT_DIR") or Path(current_app.instance_path) / "exports")


def inline_rows() -> int:
    """Exports of up to this many chain rows run in the request; larger ones go to a worker."""
    return int(current_app.config.get("EXPORT_INLINE_ROWS", 5000))


def spec_of(export: Export, user: User | None) -> writer.Spec:
    return writer.Spec(
        kind=export.kind,
        file_format=export.file_format,
        since=export.since,
        until=export.until,
        profile=export.profile,
        location_id=export.location_id,
        schedule=export.schedule,
        drug_id=export.drug_id,
        generated_by={"user_id": user.id, "name": user.name, "role": user.role} if user else {"name": "clinic export"},
        disclosure=(
            None
            if export.purpose_kind in NOT_ACCOUNTED
            else {
                "recipient": export.recipient,
                "recipient_address": export.recipient_address,
                "purpose_kind": export.purpose_kind,
                "purpose": export.purpose,
            }
        ),
    )


def _check_request(actor: User | None, export: Export) -> None:
    errors: dict[str, list[str]] = {}
    if export.purpose_kind not in PurposeKind.__members__:
        errors["purpose_kind"] = ["One of: " + ", ".join(PurposeKind) + "."]
    elif export.purpose_kind not in NOT_ACCOUNTED:
        # HIP-10: an accounting entry names the recipient and the purpose
        if not (export.recipient or "").strip():
            errors["recipient"] = ["Name the agency the records go to."]
        if not (export.purpose or "").strip():
            errors["purpose"] = ["Say why (or cite the written request)."]
    if export.drug_id is not None and db.session.get(Drug, export.drug_id) is None:
        errors["drug_id"] = ["No such drug."]
    if export.location_id is None and member_location_ids(actor) is not None:
        # SYS-13: an auditor reads only the registrants granted to them, one per export
        errors["location_id"] = ["Name the location (DEA registrant) to export."]
    if export.schedule is not None and export.schedule not in ("CII", "CIII", "CIV", "CV"):
        errors["schedule"] = ["One of: CII, CIII, CIV, CV."]
    for name, at in (("since", export.since), ("until", export.until)):
        if at.year < 2 or at.year > 9998:
            errors[name] = ["Out of range."]
    if errors:
        raise ValidationFailed(errors=errors)
    spec_of(export, actor).check()
    if export.location_id is not None and export.location_id not in readable_location_ids(actor):
        raise NotFound("No such location")
    if export.location_id is not None and proof.KINDS.get(export.kind, (None, []))[0] is not None:
        from clinic.inventory.purge import export_refusal

        # SYS-02: a period reaching into purged entries cannot be proved complete: refused (409)
        if (why := export_refusal(export.location_id, export.since)) is not None:
            raise Conflict(why)
    if not _reads_its_scope(export, actor):
        raise NotAMember(
            "The access log and the audit trail are every location's: only an auditor granted every "
            "location exports them."
        )


def _reads_its_scope(export: Export, actor: User | None) -> bool:
    """SYS-13: the access log and the audit trail are the whole clinic's (their rows name no
    location, so naming one filters nothing): read only by whom reads every location."""
    if proof.KINDS.get(export.kind, (None, []))[0] is not None:
        return True
    ids = member_location_ids(actor)
    return ids is None or db.session.scalar(select(Location.id).where(Location.id.not_in(sorted(ids))).limit(1)) is None


def period(since: str, until: str, location_id: int | None) -> tuple[datetime, datetime]:
    """``since``/``until`` as the auditor gives them: a date is a whole local day at the location
    (UTC without one), ``until`` inclusive; a timestamp needs its offset and is taken as is."""
    from datetime import date, time, timedelta
    from zoneinfo import ZoneInfo

    from clinic.locations.models import Location

    location = db.session.get(Location, location_id) if location_id is not None else None
    zone = ZoneInfo(location.timezone) if location is not None else UTC

    def moment(value: str, extra_days: int) -> datetime:
        value = (value or "").strip()
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=extra_days)
            return datetime.combine(day, time(0), zone).astimezone(UTC)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if at.tzinfo is None:
            raise ValueError("no offset")
        return at.astimezone(UTC)

    bounds: list[datetime] = []
    errors: dict[str, list[str]] = {}
    for name, value, extra in (("since", since, 0), ("until", until, 1)):
        try:
            bounds.append(moment(value, extra))
        except (ValueError, OverflowError):
            errors[name] = ["A date (YYYY-MM-DD) or a timestamp with its offset."]
    if errors:
        raise ValidationFailed(errors=errors)
    return bounds[0], bounds[1]


def request_export(
    *,
    actor: User | None,
    kind: str,
    file_format: str,
    since: datetime,
    until: datetime,
    location_id: int | None = None,
    profile: str = "dea-inspection",
    schedule: str | None = None,
    drug_id: int | None = None,
    recipient: str | None = None,
    recipient_address: str | None = None,
    purpose_kind: str = PurposeKind.operations.value,
    purpose: str | None = None,
    run_now: bool | None = None,
    out: Path | None = None,
    progress: writer.Progress | None = None,
) -> Export:
    export = Export(
        requested_by_id=actor.id if actor else None,
        kind=kind,
        file_format=file_format,
        profile=profile,
        location_id=location_id,
        since=since,
        until=until,
        schedule=schedule,
        drug_id=drug_id,
        recipient=(recipient or "").strip() or None,
        recipient_address=(recipient_address or "").strip() or None,
        purpose_kind=purpose_kind,
        purpose=(purpose or "").strip() or None,
        status=ExportStatus.queued.value,
    )
    _check_request(actor, export)
    db.session.add(export)
    db.session.flush()
    audit.touched("export", export.id)
    audit.record(
        actor=actor,
        tag=Tag.exports_export_request,
        subject=("export", export.id),
        data={"kind": kind, "format": file_format, "profile": profile, "location_id": location_id},
    )
    if run_now is None:
        run_now = estimate(export) <= inline_rows()
    if run_now or out is not None:
        run(export, actor, out=out, on_progress=progress)
    else:
        from clinic.exports import tasks

        export_id = export.id
        tx.after_commit(lambda: tasks.run_export.delay(export_id))
    return export


def estimate(export: Export) -> int:
    if export.location_id is None:
        return inline_rows() + 1 if export.kind in ("access-log", "audit-trail") else 0
    first = db.session.scalar(
        select(func.min(LedgerEntry.seq)).where(
            LedgerEntry.location_id == export.location_id, LedgerEntry.recorded_at >= export.since
        )
    )
    head = db.session.scalar(select(func.max(LedgerEntry.seq)).where(LedgerEntry.location_id == export.location_id))
    return 0 if head is None else head - (first or head) + 2


def run(
    export: Export,
    actor: User | None,
    *,
    commit_progress: bool = False,
    out: Path | None = None,
    on_progress: writer.Progress | None = None,
) -> Export:
    """Write the bundle; record the disclosures; verify it as an auditor would."""
    if export.status not in (ExportStatus.queued, ExportStatus.running):
        raise Conflict(f"The export is {export.status}.")
    export.status = ExportStatus.running.value
    path = out or export_dir() / str(export.id) / f"{export.kind}-{export.id}.{SUFFIX[export.file_format]}"

    def progress(done: int, total: int) -> None:
        export.rows_done, export.rows_total = done, total
        if on_progress is not None:
            on_progress(done, total)
        if commit_progress:
            tx.commit()

    try:
        result = writer.write(spec_of(export, actor), path, progress)
    except ValidationFailed as exc:
        export.status, export.error = (
            ExportStatus.failed.value,
            "; ".join(m for msgs in (exc.errors or {}).values() for m in msgs)[:300],
        )
        export.finished_at = utcnow()
        return export
    export.rows, export.file_name = result.rows, path.name
    export.manifest_sha256 = next(f["sha256"] for f in _manifest_files(path))
    export.verification = check(path, walk=result.rows <= int(current_app.config.get("EXPORT_VERIFY_ROWS", 10000)))
    export.status, export.finished_at = ExportStatus.done.value, utcnow()
    _disclose(export, actor, result.patients)
    audit.record(
        actor=actor,
        tag=Tag.exports_export_finish,
        subject=("export", export.id),
        data={"rows": result.rows, "disclosed_patients": len(result.patients)}
        | ({"read": result.manifest["read"]} if "read" in result.manifest else {}),
    )
    return export


def _manifest_files(path: Path) -> list[dict[str, Any]]:
    import hashlib

    manifest = path.with_name(path.name + ".manifest.json")
    return [{"sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}]


def check(path: Path, walk: bool = True) -> str:
    """The offline verifier, run on the bundle with the clinic's own key pinned. Past
    ``EXPORT_VERIFY_ROWS`` rows it checks the signatures and the files' digests only: walking the
    rows again would double a large export's time to re-prove what the writer has just read from the
    chain; the auditor's clinic-verify walks them."""
    from clinic.core import signing

    try:
        summary = proof.verify(str(path), None, {signing.public_key_hex()}, set(), walk=walk)
        return "OK: " + summary + ("" if walk else "; signatures and digests checked, rows not re-walked here")
    except proof.Altered as problem:
        return f"ALTERED: {problem}"[:300]


def _disclose(export: Export, actor: User | None, patients: set[int]) -> None:
    """HIP-08/10: date, recipient, description, purpose; one entry per patient whose PHI went out."""
    if export.purpose_kind in NOT_ACCOUNTED or not patients:
        return
    fields = "name and address" if export.profile == "dea-inspection" else "identifiers, name and address"
    description = (
        f"{export.kind.replace('-', ' ')} entries naming the patient ({fields}) and the controlled substances given, "
        f"{export.since.date().isoformat()} to {export.until.date().isoformat()}"
    )
    now = utcnow()
    for pid in sorted(patients):
        db.session.add(
            Disclosure(
                patient_id=pid,
                export_id=export.id,
                disclosed_at=now,
                recipient=export.recipient or "",
                recipient_address=export.recipient_address,
                description=description,
                purpose_kind=export.purpose_kind,
                purpose=export.purpose or "",
                recorded_by_id=actor.id if actor else None,
            )
        )


def log_cli_access(export: Export, actor: User | None) -> None:
    """HIP-01: an export from the command line is in the access log as a request's would be."""
    import uuid

    audit.log_access(
        audit.access_event(
            user_id=actor.id if actor else None,
            action="CLI clinic export",
            obj=f"export:{export.id}",
            outcome="allowed",
            status_code=200,
            client_addr="cli",
            request_id=uuid.uuid4().hex,
        )
    )


def fail(export: Export, message: str) -> None:
    export.status, export.error, export.finished_at = ExportStatus.failed.value, message[:300], utcnow()
    audit.record(actor=None, tag=Tag.exports_export_fail, subject=("export", export.id), data={"error": message[:120]})


def get_export(export_id: int, user: User) -> Export:
    export = db.session.get(Export, export_id)
    if export is None or not _visible(export, user):
        raise NotFound("No such export")
    return export


def _visible(export: Export, user: User) -> bool:
    if export.location_id is not None and export.location_id not in readable_location_ids(user):
        return False
    if not _reads_its_scope(export, user):  # made while granted every location, read after a withdrawal
        return False
    return user.role == "admin" or export.requested_by_id == user.id


def list_exports(user: User, limit: int = 50) -> list[Export]:
    q = select(Export).order_by(Export.id.desc()).limit(limit)
    if user.role != "admin":
        q = q.where(Export.requested_by_id == user.id)
    return [e for e in db.session.scalars(q) if _visible(e, user)]


def file_path(export: Export, part: str = "file") -> Path:
    if export.status != ExportStatus.done or not export.file_name:
        raise Conflict(f"The export is {export.status}.")
    base = export_dir() / str(export.id) / export.file_name
    return base if part == "file" else base.with_name(base.name + ".manifest.json")


def list_disclosures(patient_id: int, since: datetime, until: datetime) -> list[Disclosure]:
    """HIP-07: the accounting for one patient over a period; operations disclosures are never in it."""
    if db.session.get(Patient, patient_id) is None:
        raise NotFound("No such patient")
    if until <= since:
        raise ValidationFailed(errors={"until": ["Must be after since."]})
    return list(
        db.session.scalars(
            select(Disclosure)
            .where(
                Disclosure.patient_id == patient_id, Disclosure.disclosed_at >= since, Disclosure.disclosed_at < until
            )
            .order_by(Disclosure.disclosed_at, Disclosure.id)
        )
    )


def ensure_permission(user: User) -> None:
    if user.role not in ("admin", "auditor"):
        raise PermissionDenied()
