"""The seeded protocol catalog (version 1 of each) and the expansion of a protocol into visits.

Protocols are data: admins add new versions; a course keeps the version it was booked with.
Doses are decimal strings (mg or mg/kg), never floats. Sources: DOMAIN.md SPR-20..22, IVK-03, IVK-07.
"""

from __future__ import annotations

from typing import Any

#: weekday offsets (Monday = 0 relative to the week's first day) for n visits in a week
WEEKLY_OFFSETS: dict[int, list[int]] = {1: [0], 2: [0, 3], 3: [0, 2, 4]}

SEED: list[dict[str, Any]] = [
    {
        "code": "ketamine-iv-induction",
        "name": "IV ketamine induction: 6 infusions over 2-3 weeks",
        "rules": {
            "drug": "ketamine",
            "route": "IV",
            "dose": {"kind": "mg_per_kg", "target": "0.5", "min": "0.1", "max": "1.0"},
            "infusion_minutes": 40,
            "chair_minutes": 120,
            "observation_minutes": 60,
            "vitals_checkpoints_minutes": [0, 15, 30, 40, 60],
            "bp_hold": {"systolic": 160, "diastolic": 100},
            "min_spacing_hours": 40,
            "max_per_week": 3,
            "phases": [{"phase": "induction", "weeks": 2, "per_week": 3}],
            "endpoint": "6 infusions; review response at the end of induction (IVK-07, IVK-08)",
        },
    },
    {
        "code": "ketamine-iv-booster",
        "name": "IV ketamine booster infusion",
        "rules": {
            "drug": "ketamine",
            "route": "IV",
            "dose": {"kind": "mg_per_kg", "target": "0.5", "min": "0.1", "max": "1.0"},
            "infusion_minutes": 40,
            "chair_minutes": 120,
            "observation_minutes": 60,
            "vitals_checkpoints_minutes": [0, 15, 30, 40, 60],
            "bp_hold": {"systolic": 160, "diastolic": 100},
            "min_spacing_hours": 72,
            "max_per_week": 1,
            "phases": [{"phase": "booster", "weeks": 1, "per_week": 1}],
            "endpoint": "one booster; the next only after a prescriber review",
        },
    },
    {
        "code": "ketamine-im",
        "name": "IM ketamine: 4 weekly sessions",
        "rules": {
            "drug": "ketamine",
            "route": "IM",
            "dose": {"kind": "mg_per_kg", "target": "0.5", "min": "0.1", "max": "1.0"},
            "infusion_minutes": 5,
            "chair_minutes": 90,
            "observation_minutes": 60,
            "vitals_checkpoints_minutes": [0, 15, 30, 60],
            "bp_hold": {"systolic": 160, "diastolic": 100},
            "min_spacing_hours": 120,
            "max_per_week": 1,
            "phases": [{"phase": "series", "weeks": 4, "per_week": 1}],
            "endpoint": "4 sessions, then review",
        },
    },
    {
        "code": "esketamine-rems",
        "name": "Spravato (esketamine) for treatment-resistant depression",
        "rules": {
            "drug": "esketamine",
            "route": "intranasal",
            "dose": {
                "kind": "fixed",
                "options_mg": ["56", "84"],
                "first_mg": "56",
                "device_mg": "28",
                "higher_only_after": "56",
            },
            "infusion_minutes": 15,
            "chair_minutes": 150,
            "observation_minutes": 120,
            "vitals_checkpoints_minutes": [0, 40, 120],
            "bp_hold": {"systolic": 140, "diastolic": 90},
            "min_spacing_hours": 48,
            "max_per_week": 2,
            "phases": [
                {"phase": "induction", "weeks": 4, "per_week": 2},
                {"phase": "maintenance", "weeks": 4, "per_week": 1},
            ],
            "endpoint": "evaluate after induction (week 4); from week 9 weekly or every 2 weeks at the "
            "lowest frequency that keeps the response (SPR-21)",
            "requires_rems": True,
        },
    },
    {
        "code": "esketamine-mdsi",
        "name": "Spravato (esketamine) for MDD with acute suicidal ideation or behaviour",
        "rules": {
            "drug": "esketamine",
            "route": "intranasal",
            "dose": {"kind": "fixed", "options_mg": ["84", "56"], "first_mg": "84", "device_mg": "28"},
            "infusion_minutes": 15,
            "chair_minutes": 150,
            "observation_minutes": 120,
            "vitals_checkpoints_minutes": [0, 40, 120],
            "bp_hold": {"systolic": 140, "diastolic": 90},
            "min_spacing_hours": 48,
            "max_per_week": 2,
            "phases": [{"phase": "induction", "weeks": 4, "per_week": 2}],
            "endpoint": "evaluate after 4 weeks; longer treatment not systematically evaluated (SPR-22)",
            "requires_rems": True,
        },
    },
]
