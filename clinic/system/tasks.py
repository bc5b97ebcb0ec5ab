from __future__ import annotations

from celery import shared_task

from clinic.system import service


@shared_task(name="system.heartbeat", acks_late=True, ignore_result=True)
def heartbeat() -> str:
    return service.record_heartbeat().isoformat()
