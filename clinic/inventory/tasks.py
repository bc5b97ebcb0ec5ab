from __future__ import annotations

from celery import shared_task

from clinic.inventory import integrity


@shared_task(name="inventory.sign_checkpoints", acks_late=True, ignore_result=True)
def sign_checkpoints() -> int:
    """Sign every chain head that moved since its last checkpoint (at least daily, SYS-05)."""
    return len(integrity.sign_checkpoints())


@shared_task(name="inventory.flag_overdue_loss_reports", acks_late=True, ignore_result=True)
def flag_overdue_loss_reports() -> int:
    """DEA-31/32: a theft or significant loss whose notice or Form 106 is late raises an alert."""
    from clinic.core.time import utcnow
    from clinic.inventory import service

    return service.flag_overdue_loss_reports(utcnow())
