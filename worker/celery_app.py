"""Two lines, as in Flask's Celery example: build the Flask app, take its Celery app."""

from typing import Any

from celery.signals import beat_init

from clinic import create_app
from worker.schedule import BEAT_SCHEDULE

flask_app = create_app()
celery = flask_app.extensions["celery"]
celery.conf.beat_schedule = BEAT_SCHEDULE


@beat_init.connect
def _first_heartbeat(sender: Any, **kwargs: Any) -> None:
    """Beat's interval schedule first fires a full interval after start: report in at once instead."""
    sender.app.send_task("system.heartbeat", expires=55)
