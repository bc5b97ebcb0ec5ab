from __future__ import annotations

from celery import shared_task


@shared_task(name="exports.run", acks_late=True, ignore_result=True)
def run_export(export_id: int) -> str:
    """A large export on a worker: progress committed per batch, so the page's bar moves."""
    from clinic.auth.models import User
    from clinic.core import tx
    from clinic.exports import service
    from clinic.exports.models import Export, ExportStatus
    from clinic.extensions import db

    export = db.session.get(Export, export_id)
    if export is None or export.status not in (ExportStatus.queued, ExportStatus.running):
        return "skipped"
    actor = db.session.get(User, export.requested_by_id) if export.requested_by_id else None
    try:
        service.run(export, actor, commit_progress=True)
        tx.commit()
    except Exception as exc:
        tx.rollback()
        export = db.session.get(Export, export_id)
        if export is not None:
            service.fail(export, f"{exc.__class__.__name__}")
            tx.commit()
        raise
    return export.status
