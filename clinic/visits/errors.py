from __future__ import annotations

from clinic.core.errors import Conflict


class GatesNotMet(Conflict):
    code = "visit_gates_not_met"
    title = "The dose cannot be given yet: some pre-dose checks are not met"


class DischargeRefused(Conflict):
    code = "discharge_criteria_not_met"
    title = "The patient cannot be discharged yet"


class NoHold(Conflict):
    code = "no_hold"
    title = "The dose is not held"


class RemainderRefused(Conflict):
    code = "remainder_refused"
    title = "The vial's remainder cannot be resolved as asked"
