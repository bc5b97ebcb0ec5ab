"""Jurisdiction profiles (SYS-04): choosing a state sets its rules, as a preset.

A profile starts from the federal floor (``DEFAULT_JURISDICTION``), takes the state's preset, and
then whatever the admin set by hand in the same request. Every value is checked by
``clinic.locations.schemas.JurisdictionSchema`` before it is stored, so a profile can never hold a
value that fails later where it is used.
"""

from __future__ import annotations

from typing import Any

from clinic.locations.models import DEFAULT_JURISDICTION

#: what choosing a state leaves as it was: a legal hold the clinic placed and the retention it chose
#: (SYS-02: records are kept for the longest period that applies)
KEPT_ACROSS_STATES = ("legal_hold", "retention_years")

#: state -> what differs from the federal floor (DEA-22, DEA-37, DEA-40). Sources in docs/rules/dea.md.
PRESETS: dict[str, dict[str, Any]] = {
    # Iowa: annual inventory within one year and one week; exact counts, except liquids in
    # unincremented containers estimated to the nearest quarter; witnessed waste (DEA-22, DEA-40).
    "IA": {
        "inventory_interval_months": None,
        "inventory_interval_days": 372,
        "count_mode": "exact_liquid_quarters",
        "waste_witness_required": True,
    },
    # South Carolina and Michigan: annual inventories (DEA-22).
    "SC": {"inventory_interval_months": 12},
    "MI": {"inventory_interval_months": 12},
    # California: discrepancies to the Board within 30 days, theft or diversion within 14 (DEA-37).
    "CA": {"board_loss_notice_days": 30, "board_theft_notice_days": 14},
    # Rhode Island: the board is told immediately (DEA-37): the same day.
    "RI": {"board_loss_notice_days": 0},
}


def profile(current: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    """SYS-04: the profile after ``changes``: a (new) state resets every field to that state's preset; fields
    given by hand in the same change win. An interval given in months or days replaces the other."""
    if "state" in changes and changes["state"] != (current or {}).get("state"):
        base = {**DEFAULT_JURISDICTION, **PRESETS.get(changes["state"] or "", {})}
        # SYS-02: the clinic's own hold and retention are no state's preset: a new state keeps them
        # (and the longer retention), or choosing a state would let the next purge delete what was kept
        kept = {key: (current or {})[key] for key in KEPT_ACROSS_STATES if key in (current or {})}
        if kept.get("retention_years") is not None:
            kept["retention_years"] = max(int(kept["retention_years"]), int(base["retention_years"] or 0))
        base.update(kept)
    else:
        base = {**DEFAULT_JURISDICTION, **(current or {})}
    merged = {**base, **changes}
    if "inventory_interval_months" in changes and "inventory_interval_days" not in changes:
        merged["inventory_interval_days"] = None
    if "inventory_interval_days" in changes and "inventory_interval_months" not in changes:
        merged["inventory_interval_months"] = None
    if merged.get("inventory_interval_days") is None and merged.get("inventory_interval_months") is None:
        merged["inventory_interval_months"] = DEFAULT_JURISDICTION["inventory_interval_months"]
    return merged
