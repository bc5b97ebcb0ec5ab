"""What a protocol says about a visit, as pure functions: dose, timers, vital-sign limits.

A protocol's rules are data (clinic.scheduling.protocols): the BP hold threshold (SPR-11, IVK-05:
configurable per protocol, never hard-coded per visit), the vitals checkpoints (SPR-10, IVK-13:
from the protocol's ``vitals_checkpoints_minutes``; a protocol without them gets no checkpoint
alerts), and the observation minimum (SPR-14/15 for esketamine, from the first device; for IV/IM
the protocol's minutes after the dose ends, before the recovery assessment IVK-09 asks for). Keys
older protocol versions may lack take the ``DEFAULTS`` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: a reading this many minutes before a checkpoint still counts for it
EARLY_MINUTES = 5
#: the last reading must be this recent when the patient leaves ("prior to completion", SPR-19)
PRE_DISCHARGE_MINUTES = 15
#: SPR-20: rest 5 minutes after each device
DEVICE_GAP = timedelta(minutes=5)

DEFAULTS: dict[str, Any] = {
    "weight_valid_days": 30,
    "infusion_tolerance_minutes": 10,
    "vitals_limits": {
        "systolic": [90, None],  # the upper limit is the protocol's hold threshold
        "diastolic": [50, None],
        "heart_rate": [50, 110],
        "spo2": [92, None],
        "respiratory_rate": [10, 24],
        "sedation": [5, None],  # MOAA/S below 5: not fully responsive
        "dissociation": [None, 0],
    },
}


def rule(rules: dict[str, Any], name: str) -> Any:
    return rules.get(name, DEFAULTS.get(name))


def is_devices(rules: dict[str, Any]) -> bool:
    return rules.get("route") == "intranasal"


def container_form(rules: dict[str, Any]) -> str:
    """The drug form a protocol's route uses: devices for intranasal, vials for IV and IM."""
    return "nasal_device" if is_devices(rules) else "vial"


def checkpoints(rules: dict[str, Any]) -> list[int]:
    """Post-dose vitals checkpoints, minutes after the dose started (0 is the pre-dose reading)."""
    return sorted({int(m) for m in rules.get("vitals_checkpoints_minutes", []) if int(m) > 0})


def hold_threshold(rules: dict[str, Any]) -> tuple[int, int]:
    hold = rules.get("bp_hold") or {}
    return int(hold.get("systolic", 140)), int(hold.get("diastolic", 90))


def holds_dose(rules: dict[str, Any], systolic: int, diastolic: int) -> bool:
    """SPR-11: a baseline BP above the threshold holds the dose for a prescriber's decision."""
    sys_max, dia_max = hold_threshold(rules)
    return systolic > sys_max or diastolic > dia_max


def out_of_range(rules: dict[str, Any], reading: dict[str, int | None]) -> list[dict[str, Any]]:
    """The values outside the protocol's limits, each with the limit in words."""
    limits = {k: list(v) for k, v in {**DEFAULTS["vitals_limits"], **rules.get("vitals_limits", {})}.items()}
    sys_max, dia_max = hold_threshold(rules)
    limits["systolic"][1] = limits["systolic"][1] or sys_max
    limits["diastolic"][1] = limits["diastolic"][1] or dia_max
    found = []
    for field, (low, high) in limits.items():
        value = reading.get(field)
        if value is None:
            continue
        if low is not None and value < low:
            found.append({"field": field, "value": value, "limit": f"below {low}"})
        elif high is not None and value > high:
            found.append({"field": field, "value": value, "limit": f"above {high}"})
    return found


@dataclass(frozen=True)
class DoseBounds:
    """A visit's dose rule: for mg/kg, the target and the bounds for this weight; fixed otherwise."""

    target_ug: int
    min_ug: int
    max_ug: int
    options_ug: tuple[int, ...] = ()
    device_ug: int | None = None


def ug(mg: str | Decimal) -> int:
    return int((Decimal(mg) * 1000).to_integral_value(ROUND_HALF_UP))


def weight_based(rules: dict[str, Any], weight_g: int) -> DoseBounds:
    """IVK-03: weight x mg/kg, rounded to 0.1 mg; the bounds are the protocol's min and max mg/kg."""
    dose = rules["dose"]
    kg = Decimal(weight_g) / 1000

    def at(mg_per_kg: str) -> int:
        mg = (kg * Decimal(mg_per_kg)).quantize(Decimal("0.1"), ROUND_HALF_UP)
        return ug(mg)

    return DoseBounds(target_ug=at(dose["target"]), min_ug=at(dose["min"]), max_ug=at(dose["max"]))


def fixed(rules: dict[str, Any], *, first_in_course: bool, had_lower: bool) -> DoseBounds:
    """SPR-20/21: whole 28 mg devices; the course's first dose is the protocol's, and a higher dose
    only after the lower one was given in this course."""
    dose = rules["dose"]
    options = sorted(ug(mg) for mg in dose["options_mg"])
    first = ug(dose.get("first_mg", dose["options_mg"][0]))
    allowed: tuple[int, ...]
    if first_in_course:
        allowed = (first,)
    elif "higher_only_after" in dose and not had_lower:
        floor = ug(dose["higher_only_after"])
        allowed = tuple(o for o in options if o <= floor)
    else:
        allowed = tuple(options)
    return DoseBounds(
        # A standing order repeats the protocol's usual dose where the course allows it (84 mg for
        # MDSI, SPR-22; 56 mg for TRD until a prescriber orders more), else the lowest allowed.
        target_ug=first if first in allowed else allowed[0],
        min_ug=min(allowed),
        max_ug=max(allowed),
        options_ug=allowed,
        device_ug=ug(dose.get("device_mg", "28")),
    )


def earliest_discharge(rules: dict[str, Any], *, started_at: datetime, ended_at: datetime) -> datetime:
    """SPR-14/15: intranasal, the observation minimum from the first device; IV/IM, after the dose ends."""
    minimum = timedelta(minutes=int(rules.get("observation_minutes", 120)))
    return (started_at if is_devices(rules) else ended_at) + minimum


def infusion_off_by(rules: dict[str, Any], started_at: datetime, ended_at: datetime) -> int | None:
    """Minutes an IV infusion's duration lies outside the protocol's tolerance; None when within."""
    if rules.get("route") != "IV":
        return None
    planned = int(rules.get("infusion_minutes", 40))
    actual = (ended_at - started_at) / timedelta(minutes=1)
    tolerance = int(rule(rules, "infusion_tolerance_minutes"))
    off = abs(actual - planned)
    return None if off <= tolerance else round(actual - planned)
