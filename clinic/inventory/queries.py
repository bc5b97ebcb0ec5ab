"""Read-only page data for the staff pages (``views.py``), built on ``service``'s readers.

Nothing here writes, decides a rule or commits; it gathers what one page shows, so that each
view makes one call. The ledger rules stay in the modules behind ``service``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import chain

from sqlalchemy import select

from clinic.auth import scope
from clinic.auth.models import User
from clinic.core.time import today_at
from clinic.extensions import db
from clinic.inventory import service
from clinic.inventory.models import (
    Container,
    ContainerStatus,
    Discrepancy,
    DiscrepancyAlert,
    DiscrepancyStatus,
    Drug,
    LedgerEntry,
    LossReport,
)
from clinic.inventory.schemas import page
from clinic.locations import service as locations
from clinic.locations.models import Location, StorageSite
from clinic.patients.models import Patient


@dataclass
class Where:
    """The location a page is about (None before any exists) and the ones to pick from."""

    location: Location | None
    locations: list[Location]

    @property
    def timezone(self) -> str:
        return self.location.timezone if self.location else "UTC"

    @property
    def today(self) -> date:
        """The location's own calendar day, for expiry warnings."""
        return today_at(self.timezone)


def where(location_id: int | None) -> Where:
    """``location_id``'s location (NotFound if unknown), or the first one when none is asked for."""
    found = scope.my_locations(scope.acting_user())
    if location_id is None:
        return Where(found[0] if found else None, found)
    location = locations.get_location(location_id)
    scope.require_location(scope.acting_user(), location.id)  # SYS-11, whatever the request's check read
    return Where(location, found)


USABLE = frozenset({ContainerStatus.sealed.value, ContainerStatus.open.value})
#: the most recent disposed containers the safe's "show all" lists (the ledger keeps every one)
DISPOSED_SHOWN = 100


@dataclass
class DrugTotal:
    drug: Drug
    containers: int
    balance_ug: int


@dataclass
class Stock:
    """What is on hand at a location: every container not yet disposed, by storage site."""

    where: Where
    sites: list[StorageSite] = field(default_factory=list)
    containers: list[Container] = field(default_factory=list)
    totals: list[DrugTotal] = field(default_factory=list)
    drugs: list[Drug] = field(default_factory=list)

    #: disposed containers, only when the safe's toggle asks for everything
    disposed: list[Container] = field(default_factory=list)

    def at(self, site_id: int) -> list[Container]:
        return [c for c in self.containers if c.storage_site_id == site_id]

    def usable(self, c: Container) -> bool:
        """On hand and usable: sealed or open, something left, not past its expiry (the location's day)."""
        return c.status in USABLE and c.balance_ug > 0 and c.expires_on >= self.where.today

    @property
    def on_hand(self) -> list[Container]:
        return [c for c in self.containers if self.usable(c)]

    @property
    def not_usable(self) -> list[Container]:
        """Empty and expired containers still held (expired stock awaits disposal), then disposed ones."""
        return [c for c in self.containers if not self.usable(c)] + self.disposed

    @property
    def with_balance(self) -> list[Container]:
        """What can still be lost, returned or destroyed, or must be counted: anything with stock in it."""
        return [c for c in self.containers if c.balance_ug > 0]

    @property
    def to_count(self) -> list[Container]:
        """The count sheet's lines: usable stock first, then expired or quarantined stock awaiting
        return or destruction (an inventory lists it too, DEA-17). Empty containers hold nothing
        to count; disposed ones are gone."""
        held = self.with_balance
        return [c for c in held if self.usable(c)] + [c for c in held if not self.usable(c)]

    @property
    def site_names(self) -> dict[int, str]:
        return {s.id: s.name for s in self.sites}


def stock(location_id: int | None, *, with_disposed: bool = False) -> Stock:
    here = where(location_id)
    if here.location is None:
        return Stock(here)
    containers, per_drug = service.balances(here.location.id)
    drugs = {c.drug_id: c.drug for c in containers}
    disposed = (
        list(
            db.session.scalars(
                select(Container)
                .where(Container.location_id == here.location.id, Container.status == ContainerStatus.disposed.value)
                .order_by(Container.id.desc())
                .limit(DISPOSED_SHOWN)
            )
        )
        if with_disposed
        else []
    )
    return Stock(
        here,
        locations.list_storage_sites(here.location.id),
        containers,
        [DrugTotal(drugs[row["drug_id"]], row["containers"], row["balance_ug"]) for row in per_drug],
        service.list_drugs(),
        disposed,
    )


@dataclass
class Overview:
    """The safe page: stock plus what needs attention."""

    stock: Stock
    small_discrepancy_pattern: bool = False
    open_discrepancies: int = 0
    #: DEA Form 106 drafts not yet filed
    loss_reports: list[LossReport] = field(default_factory=list)
    next_inventory_due_on: date | None = None
    inventory_overdue: bool = False
    alert: DiscrepancyAlert | None = None


def overview(location_id: int | None, *, show_all: bool = False) -> Overview:
    on_hand = stock(location_id, with_disposed=show_all)
    location = on_hand.where.location
    if location is None:
        return Overview(on_hand)
    return Overview(
        on_hand,
        service.small_discrepancy_pattern(location.id),
        len(discrepancies(location.id)),
        [r for r in service.list_loss_reports(location.id) if r.filed_at is None],
        service.next_inventory_due_on(location.id),
        service.inventory_overdue(location.id),
        service.open_alert(location.id),
    )


def discrepancies(location_id: int, *, count_id: int | None = None) -> list[tuple[Discrepancy, Container]]:
    """A location's open discrepancies, oldest first; or every discrepancy one count opened."""
    q = (
        select(Discrepancy, Container)
        .join(Container, Container.id == Discrepancy.container_id)
        .where(Discrepancy.location_id == location_id)
        .order_by(Discrepancy.id)
    )
    if count_id is None:
        q = q.where(Discrepancy.status == DiscrepancyStatus.open.value)
    else:
        q = q.where(Discrepancy.count_id == count_id)
    return [(d, c) for d, c in db.session.execute(q)]


@dataclass
class Queue:
    where: Where
    count_id: int | None
    rows: list[tuple[Discrepancy, Container]]
    names: dict[int, str]


def queue(location_id: int | None, *, count_id: int | None = None) -> Queue:
    here = where(location_id)
    rows = discrepancies(here.location.id, count_id=count_id) if here.location else []
    return Queue(here, count_id, rows, user_names(d.resolved_by_id for d, _ in rows))


@dataclass
class LedgerPage:
    entries: list[LedgerEntry]
    names: dict[int, str]
    next_cursor: str | None
    #: seq -> the seq of the correction that corrects it (the other way round is on the entry)
    corrected_by: dict[int, int] = field(default_factory=dict)
    #: patient id -> "Last, First" when the reader may see patients (HIP-03: auditors never do)
    patients: dict[int, str] = field(default_factory=dict)


def ledger_page(
    *,
    location_id: int | None,
    kind: str | None,
    container_id: int | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
    drug_id: int | None = None,
    schedule: str | None = None,
    with_patients: bool = False,
) -> LedgerPage:
    """One page of ``service.list_entries`` (the cursor is the last id seen) with the people's names."""
    entries = service.list_entries(
        location_id=location_id,
        kind=kind,
        container_id=container_id,
        since=since,
        until=until,
        after_id=int(cursor) if cursor else None,
        limit=limit,
        drug_id=drug_id,
        schedule=schedule,
    )
    people = chain.from_iterable((e.actor_id, e.witness_id, e.second_witness_id) for e in entries)
    corrected_by = {}
    if entries and location_id is not None:
        rows = db.session.execute(
            select(LedgerEntry.corrects_seq, LedgerEntry.seq).where(
                LedgerEntry.location_id == location_id, LedgerEntry.corrects_seq.in_([e.seq for e in entries])
            )
        )
        corrected_by = {row.corrects_seq: row.seq for row in rows}
    patients = patient_names(e.patient_id for e in entries) if with_patients else {}
    return LedgerPage(entries, user_names(people), page(entries, limit)["next_cursor"], corrected_by, patients)


def patient_names(ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(select(Patient.id, Patient.first_name, Patient.last_name).where(Patient.id.in_(wanted)))
    return {row.id: f"{row.last_name}, {row.first_name}" for row in rows}


def user_names(ids: Iterable[int | None]) -> dict[int, str]:
    """Display names for the people on a page (actors, witnesses, resolvers)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = db.session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
    return {row.id: row.name for row in rows}
