from __future__ import annotations

from clinic.core.errors import Conflict


class ReminderNotRetryable(Conflict):
    code = "reminder_not_retryable"
    title = "Only a failed reminder can be retried"


class ReminderNotCancellable(Conflict):
    code = "reminder_not_cancellable"
    title = "Only a pending or failed reminder can be cancelled"
