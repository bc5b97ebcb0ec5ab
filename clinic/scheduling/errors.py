from __future__ import annotations

from clinic.core.errors import Conflict


class BookingConflict(Conflict):
    code = "booking_conflict"
    title = "The course cannot be booked as asked: some visits clash"


class InvalidTransition(Conflict):
    code = "invalid_transition"
    title = "The appointment is not in a state that allows this"
