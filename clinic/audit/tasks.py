from __future__ import annotations

from celery import shared_task

from clinic.core import tx


@shared_task(name="audit.seal_logs", acks_late=True, ignore_result=True)
@tx.commits
def seal_logs() -> int:
    """Seal the access log's and audit trail's closed ranges (SYS-05); nothing waits on it."""
    from clinic.audit import seals

    return len(seals.seal_all())


@shared_task(name="audit.integrity_check", acks_late=True, ignore_result=True)
@tx.commits
def integrity_check() -> bool:
    """The daily check of every chain and seal; a break alerts the admins (SYS-05, HIP-02)."""
    from clinic.audit import integrity

    return integrity.run_check().ok
