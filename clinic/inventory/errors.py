from __future__ import annotations

from clinic.core.errors import Conflict, ValidationFailed


class InsufficientStock(Conflict):
    code = "insufficient_stock"
    title = "The container does not hold that much"


class ContainerUnusable(Conflict):
    code = "container_unusable"
    title = "The container cannot be drawn from"


class WitnessRequired(ValidationFailed):
    code = "witness_required"
    title = "A second licensed person must witness this"


class WitnessInvalid(ValidationFailed):
    code = "witness_invalid"
    title = "The witness could not be verified"


class InitialInventoryRequired(Conflict):
    code = "initial_inventory_required"
    title = "Take the initial inventory (it may be zero) before receiving stock"


class WitnessCredentialsInvalid(WitnessInvalid):
    """A witness's wrong password or code; the attempt itself is kept, so witnesses are throttled."""


class AlreadyRecorded(Conflict):
    """Someone else changed the same record first (two people resolving one discrepancy at once)."""

    code = "already_recorded"
    title = "This has already been recorded"


class CorrectionRefused(Conflict):
    code = "correction_refused"
    title = "This entry cannot be corrected that way"
