"""Follow-up reminders: an outbox written with the change that causes it, swept and sent by Celery."""
