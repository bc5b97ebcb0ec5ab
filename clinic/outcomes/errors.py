from __future__ import annotations

from clinic.core.errors import Conflict


class ScoreAlreadyReplaced(Conflict):
    code = "outcome_score_already_replaced"
    title = "That score has already been corrected; correct the latest version instead"


class NoSafetyAlert(Conflict):
    code = "no_safety_alert"
    title = "That score raised no safety alert"


class SafetyAlertAlreadyAcknowledged(Conflict):
    code = "safety_alert_already_acknowledged"
    title = "That safety alert has already been acknowledged"
