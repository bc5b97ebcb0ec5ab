"""The whole beat schedule in one place. Periodic tasks scan database state; none waits in the broker."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, Any] = {
    # Proves beat -> broker -> worker -> database works; the dashboard warns when it goes stale.
    "heartbeat": {"task": "system.heartbeat", "schedule": 60.0, "options": {"expires": 55}},
    # Signed ledger checkpoints: hourly, so an auditor's copy is never more than an hour behind.
    "ledger-checkpoints": {"task": "inventory.sign_checkpoints", "schedule": 3600.0},
    # DEA Form 106 deadlines (one business day for the notice, 45 days to file).
    "loss-report-deadlines": {"task": "inventory.flag_overdue_loss_reports", "schedule": 900.0},
    # Observation timers (SYS-06): due alerts are rows; this sweep raises each once, within seconds.
    # No "expires": it is an instant on beat's clock, and a worker whose clock runs ahead would drop
    # every sweep as expired (F12). A backlog after an outage is a few idle sweeps.
    "observation-alerts": {"task": "visits.raise_due_alerts", "schedule": 10.0},
}
