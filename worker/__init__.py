"""Celery entry point: ``celery -A worker worker`` and ``celery -A worker beat``."""

from worker.celery_app import celery

app = celery

__all__ = ["app", "celery"]
