from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clinic.core.db import UtcDateTime
from clinic.core.time import utcnow
from clinic.extensions import db

#: Federal defaults (SYS-04); a state profile overrides any of them.
DEFAULT_JURISDICTION: dict[str, Any] = {
    "state": None,
    "inventory_interval_months": 24,  # DEA-15 biennial; Iowa/SC/MI annual
    "inventory_interval_days": None,  # when set, wins over months: Iowa's "1 year and 1 week" is 372
    # DEA-19: CIII-V opened containers may be estimated; "exact"; or Iowa's "exact_liquid_quarters"
    "count_mode": "estimated",
    "waste_witness_required": True,  # DEA-40/42: state rule or clinic policy
    "witness_must_be_licensed": True,
    "board_loss_notice_days": None,  # DEA-37 state add-on, e.g. 30 (CA)
    "board_theft_notice_days": None,  # DEA-37: sooner for a theft, e.g. 14 (CA)
    "retention_years": 2,  # DEA-08 floor; HIPAA documentation 6 (SYS-02)
    "legal_hold": False,  # SYS-02: a hold stops every purge (clinic.core.retention)
    "small_discrepancy_pattern": {"count": 3, "days": 30},  # DEA-35
    # DOMAIN.md §4: per-flag level overrides, e.g. {"CI-06": "HARD"}; defaults live in
    # clinic/patients/screening.py, so an empty map means the suggested levels.
    "screening_levels": {},
}

DEFAULT_HOURS: dict[str, list[str] | None] = {
    "mon": ["08:00", "18:00"],
    "tue": ["08:00", "18:00"],
    "wed": ["08:00", "18:00"],
    "thu": ["08:00", "18:00"],
    "fri": ["08:00", "18:00"],
    "sat": None,
    "sun": None,
}


class Location(db.Model):  # type: ignore[name-defined]
    """A registered place of practice: one DEA registration, its own records (DEA-02, DEA-05)."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(40))
    dea_registration: Mapped[str] = mapped_column(String(9), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    jurisdiction: Mapped[dict[str, Any]] = mapped_column(JSON, default=lambda: dict(DEFAULT_JURISDICTION))
    hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=lambda: dict(DEFAULT_HOURS))
    rems_certified_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    def rule_set(self) -> dict[str, Any]:
        return {**DEFAULT_JURISDICTION, **(self.jurisdiction or {})}

    def rule(self, name: str) -> Any:
        return self.rule_set()[name]


class StorageSite(db.Model):  # type: ignore[name-defined]
    """A securely locked cabinet or safe (DEA-29, DEA-30)."""

    __tablename__ = "storage_sites"
    __table_args__ = (UniqueConstraint("location_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"))
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
