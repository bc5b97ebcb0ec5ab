"""The whole beat schedule in one place. Periodic tasks scan database state; none waits in the broker."""

from __future__ import annotations

import os
from typing import Any

#: how often due reminders are claimed; a reminder goes out at most this long after it is due
REMINDER_SWEEP_SECONDS = float(os.environ.get("CLINIC_REMINDER_SWEEP_SECONDS") or 5)

BEAT_SCHEDULE: dict[str, Any] = {
    # Proves beat -> broker -> worker -> database works; the dashboard warns when it goes stale.
    "heartbeat": {"task": "system.heartbeat", "schedule": 60.0, "options": {"expires": 55}},
    # Signed ledger checkpoints: hourly, so an auditor's copy is never more than an hour behind.
    "ledger-checkpoints": {"task": "inventory.sign_checkpoints", "schedule": 3600.0},
    # Seals over the access log and audit trail: every 5 minutes, so at most that much is unsealed.
    "log-seals": {"task": "audit.seal_logs", "schedule": 300.0},
    # The daily integrity check of every chain and seal (SYS-05); a break alerts the admins.
    "integrity-check": {"task": "audit.integrity_check", "schedule": 86400.0},
    # DEA Form 106 deadlines (one business day for the notice, 45 days to file).
    "loss-report-deadlines": {"task": "inventory.flag_overdue_loss_reports", "schedule": 900.0},
    # Observation timers (SYS-06): due alerts are rows; this sweep raises each once, within seconds.
    # No "expires": it is an instant on beat's clock, and a worker whose clock runs ahead would drop
    # every sweep as expired (F12). A backlog after an outage is a few idle sweeps.
    "observation-alerts": {"task": "visits.raise_due_alerts", "schedule": 10.0},
    # Reminders: due rows are claimed and handed to reminders.deliver in small batches. No "expires",
    # as for the observation alerts: a skipped sweep only delays, a sweep running twice claims nothing twice.
    "reminders-sweep": {"task": "reminders.sweep", "schedule": REMINDER_SWEEP_SECONDS},
    # Calendar reminders no single change plans (counts, inventories, expiring lots); idempotent.
    "reminders-calendars": {"task": "reminders.plan_calendars", "schedule": 3600.0},
}
