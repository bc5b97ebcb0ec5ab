"""Celery tasks: ids in, services called, no rules here.

``reminders.sweep`` (beat, every few seconds) claims what is due and enqueues small batches for
``reminders.deliver``; nothing is ever enqueued with an ETA. ``deliver`` runs with late acks and
reject-on-worker-lost (the app's defaults, clinic/config.py), so a batch whose worker died is run
again; the claim token makes a second run harmless, and a batch Redis lost is claimed again by the
sweeper when its lease lapses (RELIABILITY F8, F9).
"""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from clinic.core import tx
from clinic.reminders import dispatch, service


@shared_task(name="reminders.sweep", acks_late=True, ignore_result=True)
def sweep() -> int:
    token, ids = dispatch.claim()
    tx.commit()  # the claim is durable before any task can see it
    size = int(current_app.config["REMINDER_TASK_BATCH"])
    for chunk in dispatch.chunks(ids, size):
        deliver.apply_async(args=(token, chunk))
    return len(ids)


@shared_task(name="reminders.deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=0)
def deliver(token: str, ids: list[int]) -> dict[str, int]:
    return dispatch.deliver(token, [int(i) for i in ids])


@shared_task(name="reminders.plan_calendars", acks_late=True, ignore_result=True)
def plan_calendars() -> int:
    """Counts, inventories, expiring lots and Form 106 deadlines for every location (idempotent)."""
    return service.plan_calendars()
