"""Two lines, as in Flask's Celery example: build the Flask app, take its Celery app."""

from clinic import create_app
from worker.schedule import BEAT_SCHEDULE

flask_app = create_app()
celery = flask_app.extensions["celery"]
celery.conf.beat_schedule = BEAT_SCHEDULE
