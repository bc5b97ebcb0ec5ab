from __future__ import annotations

from clinic.core.errors import Conflict


class BookingConflict(Conflict):
    code = "booking_conflict"
    title = "The course cannot be booked as asked: some visits clash"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The appointment is not in a state that allows this"


#: what each state change is called on the page and in messages
ACTIONS = {
    "checked_in": "check in",
    "dosed": "dose",
    "observing": "start observation",
    "ready_for_discharge": "mark ready for discharge",
    "discharged": "discharge",
    "cancelled": "cancel",
    "no_show": "mark no-show",
    "missed": "mark missed",
}


def refused_transition(current: str, allowed: frozenset[str], *, doing: str) -> InvalidTransition:
    """A 409 naming where the visit stands and what it allows now."""
    now = ", ".join(ACTIONS[s] for s in sorted(allowed)) or "nothing more (the visit is closed)"
    return InvalidTransition(
        f"Cannot {doing}: the visit is {current.replace('_', ' ')}. Allowed now: {now}.",
        errors={"status": [current], "allowed": sorted(ACTIONS[s] for s in allowed)},
    )


class VisitMoved(Conflict):
    code = "visit_moved"
    title = "The visit was moved by someone else meanwhile"
