"""The rules a course keeps whichever way its visits are placed: the location's REMS certification
(SPR-03), the protocol's visits per week and span (IVK-07), and the booster interval.

Booking (``service.plan_series``) and rescheduling (``service.reschedule_appointment``) both call
these, so moving a visit cannot reach a state booking would have refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clinic.core.errors import ValidationFailed
from clinic.core.fields import filled
from clinic.extensions import db
from clinic.locations.models import Location

#: IVK-07: "6 infusions over 2-3 weeks": a course may run one week past its protocol's weeks
SPAN_SLACK_WEEKS = 1
#: IVK-07: a prescriber's override of these rules takes a reason: at least this many characters
#: besides spaces, as a pattern the schema states and the service checks again
OVERRIDE_REASON_MIN = 10
OVERRIDE_REASON = filled(OVERRIDE_REASON_MIN)
OVERRIDE_REASON_ERROR = (
    f"Say why the course's rules give way (at least {OVERRIDE_REASON_MIN} characters besides spaces)."
)


def requires_rems(rules: dict[str, Any]) -> bool:
    return bool(rules.get("requires_rems"))


def check_rems_certification(location: Location, rules: dict[str, Any], visits: Iterable[tuple[int, date]]) -> None:
    """SPR-03: an esketamine visit only at a location certified on its (local) day.

    ``visits`` are (seq, local day). Refused with a 422 naming the reason: never certified, lapsed
    before the first visit, or lapsing during the course (naming the visits after the end)."""
    if not requires_rems(rules):
        return
    visits = sorted(visits, key=lambda v: v[1])
    until = location.rems_certified_until
    if until is None:
        raise ValidationFailed(
            "This location is not certified in the SPRAVATO REMS (SPR-03).",
            errors={"location_id": ["Never certified in the SPRAVATO REMS: esketamine cannot be booked here."]},
        )
    if visits and until < visits[0][1]:
        raise ValidationFailed(
            f"The location's SPRAVATO REMS certification lapsed on {until.isoformat()} (SPR-03).",
            errors={"location_id": [f"REMS certification lapsed on {until.isoformat()}."]},
        )
    after = [seq for seq, day in visits if day > until]
    if after:
        raise ValidationFailed(
            f"The location's SPRAVATO REMS certification ends on {until.isoformat()}, during the course (SPR-03).",
            errors={
                "location_id": [
                    f"REMS certification ends on {until.isoformat()}: visits {', '.join(map(str, after))} "
                    "fall after it. Renew the certification first."
                ]
            },
        )


def rems_warnings(series: Any) -> list[dict[str, Any]]:
    """A booked course whose live visits run past the location's certification end (renewal due):
    a warning naming those visits (their dosing is refused until it is renewed, SPR-03)."""
    rules = series.protocol.rules
    if not requires_rems(rules):
        return []
    location = db.session.get(Location, series.location_id)
    assert location is not None
    tz = ZoneInfo(location.timezone)
    until = location.rems_certified_until
    live = [a for a in series.appointments if a.status in ("scheduled", "checked_in")]
    past = [a for a in live if until is None or a.starts_at.astimezone(tz).date() > until]
    if not past:
        return []
    return [
        {
            "code": "rems_certification_ends",
            "detail": (
                "The location is not certified in the SPRAVATO REMS"
                if until is None
                else f"The location's SPRAVATO REMS certification ends on {until.isoformat()}"
            )
            + ": renew it before these visits or they cannot be dosed.",
            "appointments": [{"id": a.id, "seq": a.seq, "starts_at": a.starts_at.isoformat()} for a in past],
        }
    ]


def span_end(rules: dict[str, Any], start_on: date) -> date:
    """The last day of a course: its protocol's weeks plus the slack (or the protocol's own
    ``max_span_days``)."""
    days = rules.get("max_span_days")
    if days is None:
        days = (sum(int(p["weeks"]) for p in rules["phases"]) + SPAN_SLACK_WEEKS) * 7
    return start_on + timedelta(days=int(days) - 1)


def course_violations(
    *, rules: dict[str, Any], start_on: date, tz: ZoneInfo, placed: Iterable[tuple[int, datetime]]
) -> list[str]:
    """IVK-07: what the visits of a course as they would be (seq, start) break of its protocol: more than
    ``max_per_week`` in a course week (weeks count from the course's first day), or a visit past
    the course's span. Empty when none."""
    out: list[str] = []
    limit = int(rules["max_per_week"])
    weeks: dict[int, list[int]] = defaultdict(list)
    end = span_end(rules, start_on)
    late = []
    for seq, at in sorted(placed, key=lambda p: p[1]):
        day = at.astimezone(tz).date()
        weeks[(day - start_on).days // 7].append(seq)
        if day > end:
            late.append(seq)
    for week, seqs in sorted(weeks.items()):
        if len(seqs) > limit:
            out.append(
                f"Week {week + 1} of the course would hold {len(seqs)} visits ({', '.join(map(str, seqs))}); "
                f"the protocol allows at most {limit}."
            )
    if late:
        out.append(f"Visits {', '.join(map(str, late))} would fall after the course's last day ({end.isoformat()}).")
    return out


# --- boosters (IVK-07) ---------------------------------------------------------------------------

#: IVK-07: boosters "about every 3-4 weeks as needed"; a prescriber may set 1 to 52 weeks
BOOSTER_INTERVAL_DAYS = (7, 365)


def next_booster_on(series: Any) -> date | None:
    """IVK-07: the next booster's (local) day: the course's last live or attended visit plus the interval
    its prescriber set; None until one is set."""
    if series.booster_interval_days is None:
        return None
    held = [a for a in series.appointments if a.status not in ("cancelled", "no_show", "missed")]
    if not held:
        return None
    location = db.session.get(Location, series.location_id)
    assert location is not None
    last = max(a.starts_at for a in held).astimezone(ZoneInfo(location.timezone)).date()
    return last + timedelta(days=series.booster_interval_days)
