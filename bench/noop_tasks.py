"""The baseline of bench/reminder_dispatch.py: a Celery app whose one task does nothing but count.

Same broker and the same delivery settings as the app's worker (late acks, reject on worker lost,
prefetch 1, JSON), its own queue so nothing else consumes it. The count is one Redis INCR.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery("bench_noop", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    task_default_queue="bench_noop",
)
_counter = redis.Redis.from_url(os.environ.get("BENCH_COUNTER_URL") or os.environ["CELERY_BROKER_URL"])


@app.task(name="bench.noop")
def noop() -> None:
    _counter.incr("bench:noop")
