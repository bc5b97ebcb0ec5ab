"""The hash chain itself: how an entry is appended, and the checks every append path shares.

Appends to a location's chain are serialised by locking its chain-head row (``FOR UPDATE`` on
PostgreSQL; on SQLite every transaction already holds the write lock from ``BEGIN IMMEDIATE``).
The container row is locked too, and a CHECK constraint keeps its balance non-negative even if a
code path forgot to look.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, case, cast, exists, func, insert, literal_column, select, true, update
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from clinic.audit import service as audit
from clinic.audit.models import AuditEvent
from clinic.audit.tags import ledger_tag
from clinic.auth import scope
from clinic.auth.models import User
from clinic.core import tx
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.fields import format_mg
from clinic.core.time import happened_at, utcnow
from clinic.extensions import db
from clinic.inventory import checks
from clinic.inventory.chain import GENESIS, HASHED_FIELDS, committed_record, phi_paths, record_body_hash, salt_hex
from clinic.inventory.errors import InsufficientStock
from clinic.inventory.models import Container, ContainerStatus, Drug, EntryKind, LedgerChain, LedgerEntry
from clinic.locations.models import Location
from clinic.patients.models import Patient


def lock_chain(location_id: int) -> LedgerChain:
    chain = db.session.scalar(select(LedgerChain).where(LedgerChain.location_id == location_id).with_for_update())
    tx.release_locks_before_flush()  # other appends queue behind this lock: not through the WAL flush too
    if chain is None:
        if db.session.get(Location, location_id) is None:
            raise NotFound("No such location")
        chain = LedgerChain(location_id=location_id, head_seq=0, head_hash=GENESIS, has_initial_inventory=False)
        db.session.add(chain)
        db.session.flush()
    return chain


def lock_container(container_id: int) -> Container:
    container = db.session.scalar(
        select(Container)
        .where(Container.id == container_id)
        .with_for_update(of=Container)
        .execution_options(populate_existing=True)
    )
    if container is None:
        raise NotFound("No such container")
    return container


def lock_movement(
    container_id: int, *, reserve_id: bool = False, patient_id: int | None = None
) -> tuple[LedgerChain, Container, str, int | None, Any]:
    """The container's chain head and the container, locked in one statement (chain first, as every
    path locks them), with its drug and its location's time zone: what a movement out of one
    container reads under the lock, in one round trip. ``reserve_id`` (PostgreSQL): also the next
    entry id from its sequence, so the entry can be written with the COMMIT (see :func:`append`).
    ``patient_id``: also that patient's name and address (the entry's details), read in the same
    statement and not locked; the last item is then that row (id, first_name, last_name, address),
    and no such patient is a 404 naming ``patient_id``."""
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    tx.release_locks_before_flush()  # other appends queue behind the chain lock (see lock_chain)
    params: dict[str, Any] = {"container_id": container_id}
    if patient_id is not None:
        params["patient_id"] = patient_id
    row = db.session.execute(
        _lock_movement(reserve_id=reserve_id and postgresql, patient=patient_id is not None), params
    ).first()
    if row is not None:
        if patient_id is not None and row.p_id is None:
            raise _no_such_patient()
        return (
            row[0],
            row[1],
            row[2],
            row.entry_id if reserve_id and postgresql else None,
            _PatientRow(row.p_id, row.p_first_name, row.p_last_name, row.p_address) if patient_id is not None else None,
        )
    patient = None
    if patient_id is not None:
        found = db.session.get(Patient, patient_id)
        if found is None:
            raise _no_such_patient()
        patient = _PatientRow(found.id, found.first_name, found.last_name, found.address)
    container = db.session.get(Container, container_id)  # no chain yet, or no such container
    if container is None:
        raise NotFound("No such container")
    chain = lock_chain(container.location_id)
    location = db.session.get(Location, container.location_id)
    assert location is not None
    return chain, lock_container(container_id), location.timezone, None, patient


@dataclasses.dataclass(frozen=True, slots=True)
class _PatientRow:
    id: int
    first_name: str
    last_name: str
    address: str


def _no_such_patient() -> NotFound:
    return NotFound("No such patient", errors={"patient_id": ["No such patient."]})


#: the locking statement of each shape (reserving an id or not, reading a patient or not), built once
#: (executed again, SQLAlchemy reuses its cache key and compiled form)
_LOCK_MOVEMENT: dict[tuple[bool, bool], Any] = {}


def _lock_movement(*, reserve_id: bool, patient: bool) -> Any:
    stmt = _LOCK_MOVEMENT.get((reserve_id, patient))
    if stmt is not None:
        return stmt
    stmt = (
        select(LedgerChain, Container, Location.timezone)
        .join(Container, Container.location_id == LedgerChain.location_id)
        .join(Location, Location.id == LedgerChain.location_id)
    )
    if reserve_id:
        stmt = stmt.add_columns(func.nextval(func.pg_get_serial_sequence("ledger_entries", "id")).label("entry_id"))
    if patient:
        patients = Patient.__table__
        stmt = stmt.outerjoin(patients, patients.c.id == bindparam("patient_id", type_=patients.c.id.type)).add_columns(
            *(patients.c[k].label("p_" + k) for k in ("id", "first_name", "last_name", "address"))
        )
    stmt = (
        stmt.where(Container.id == bindparam("container_id"))
        .with_for_update(of=[LedgerChain, Container])
        .execution_options(populate_existing=True)
    )
    _LOCK_MOVEMENT[(reserve_id, patient)] = stmt
    return stmt


def check_time(occurred_at: datetime | None, field: str = "occurred_at") -> datetime:
    return happened_at(occurred_at, field)


def require_positive(quantity_ug: int) -> None:
    """The schemas refuse it first; services called from tasks or the CLI get the same rule."""
    if quantity_ug <= 0:
        raise ValidationFailed(errors={"quantity_mg": ["Must be more than zero."]})


def location_day(location_id: int, at: datetime) -> date:
    location = db.session.get(Location, location_id)
    assert location is not None
    return at.astimezone(ZoneInfo(location.timezone)).date()


def append(
    *,
    chain: LedgerChain,
    kind: EntryKind,
    actor: User,
    occurred_at: datetime,
    container: Container | None = None,
    delta_ug: int = 0,
    patient_id: int | None = None,
    appointment_id: int | None = None,
    witness: User | None = None,
    second_witness: User | None = None,
    corrects_seq: int | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    after_previous: str | None = None,
    entry_id: int | None = None,
) -> LedgerEntry:
    """One entry on a chain the caller has locked (and the container with it).

    ``after_previous``: refuse (as an error on that field) an entry dated before the container's
    previous movement (DEA-06), checked here so PostgreSQL can do it inside the append's statement.

    ``entry_id`` (PostgreSQL, reserved by :func:`lock_movement`): the append's statement is not sent
    now but with the unit of work's COMMIT, in the same message (``tx.with_commit_statement``): one
    round trip fewer under the chain lock. Only for a caller whose request writes nothing after the
    entry (the API's administration); a DEA-06 refusal then fails the commit and is answered as the
    same error on ``after_previous``.
    """
    scope.require_location(actor, chain.location_id)  # SYS-11: every ledger write, by any path
    balance_after = status_after = None
    if container is not None:
        balance_after = container.balance_ug + delta_ug
        if balance_after < 0:
            raise InsufficientStock(f"The container holds {format_mg(container.balance_ug)} mg.")
        status_after = container.status
        if balance_after == 0 and container.status in (ContainerStatus.sealed, ContainerStatus.open):
            status_after = ContainerStatus.empty.value
        elif delta_ug < 0 and container.status == ContainerStatus.sealed:
            status_after = ContainerStatus.open.value
    fields: dict[str, Any] = {
        "location_id": chain.location_id,
        "seq": chain.head_seq + 1,
        "kind": kind.value,
        "container_id": container.id if container else None,
        "drug_id": container.drug_id if container else None,
        "delta_ug": delta_ug,
        "balance_after_ug": balance_after,
        "patient_id": patient_id,
        "appointment_id": appointment_id,
        "actor_id": actor.id,
        "witness_id": witness.id if witness else None,
        "second_witness_id": second_witness.id if second_witness else None,
        "corrects_seq": corrects_seq,
        "occurred_at": occurred_at,
        "recorded_at": utcnow(),
        "reason": reason,
        "details": details or {},
        "prev_hash": chain.head_hash,
    }
    # HIP-15: each PHI field enters the hash as a salted commitment, so an export can leave it out
    fields["phi_salts"] = {path: salt_hex() for path in phi_paths(fields)}
    # the record the hash covers is kept as it was hashed (issue 13): an export sends it as it is
    record = committed_record(fields)
    fields["committed_record"] = record.decode()
    fields["hash"] = record_body_hash(record, fields["prev_hash"])
    audit_data = {"seq": fields["seq"], "container_id": fields["container_id"], "delta_ug": delta_ug}
    if db.session.get_bind().dialect.name == "postgresql":
        return _append_in_one_statement(
            chain, container, status_after, fields, actor, kind, audit_data, after_previous, entry_id
        )
    if after_previous is not None and container is not None:
        checks.after_previous_movements(at=occurred_at, field=after_previous, container_ids=(container.id,))
    if container is not None and balance_after is not None and status_after is not None:
        container.balance_ug, container.status = balance_after, status_after
    entry = LedgerEntry(**fields)
    db.session.add(entry)
    chain.head_seq = entry.seq
    chain.head_hash = entry.hash
    db.session.flush()
    audit.touched("ledger_entry", entry.id)
    audit.record(actor=actor, tag=ledger_tag(kind.value), subject=("ledger_entry", entry.id), data=audit_data)
    return entry


def _typed(table: Any, prefix: str, columns: Iterable[str]) -> list[Any]:
    """Typed bound parameters for an INSERT ... SELECT (a bare parameter in a SELECT list would be text),
    named ``prefix + column``."""
    return [cast(bindparam(prefix + k, type_=table.c[k].type), table.c[k].type).label(k) for k in columns]


#: the append statement of each shape (DEA-06 check or not, a container or not), built once: executed
#: again with new values, SQLAlchemy reuses its cache key and compiled form instead of rebuilding
#: and re-keying ~30 typed literals on every append (under the chain lock, where time is throughput).
_APPEND_STATEMENTS: dict[tuple[bool, bool, bool], Any] = {}
#: what :func:`append` writes of an entry: its hashed fields, the salts of its PHI commitments, its
#: committed record (the bytes hashed) and its hash
_ENTRY_COLUMNS = (*HASHED_FIELDS, "phi_salts", "committed_record", "hash")
_AUDIT_COLUMNS = ("occurred_at", "actor_id", "tag", "subject_type", "data", "request_id")


def _append_statement(*, after_previous: bool, container: bool, late: bool = False) -> Any:
    """``late``: the entry's id is given, and a DEA-06 refusal raises (``clinic_refuse``, migration
    0019s) instead of inserting nothing, since the statement travels with the COMMIT and nothing may
    commit after it was refused."""
    stmt = _APPEND_STATEMENTS.get((after_previous, container, late))
    if stmt is not None:
        return stmt
    entries, audits, chains, containers = (
        LedgerEntry.__table__,
        AuditEvent.__table__,
        LedgerChain.__table__,
        Container.__table__,
    )
    columns = ("id", *_ENTRY_COLUMNS) if late else _ENTRY_COLUMNS
    rows = select(*_typed(entries, "e_", columns))
    if after_previous:
        later = exists().where(
            entries.c.container_id == bindparam("x_container_id", type_=entries.c.container_id.type),
            entries.c.occurred_at > bindparam("x_occurred_at", type_=entries.c.occurred_at.type),
        )
        if late:  # CASE: the refusal is only evaluated when a later movement exists
            rows = rows.where(case((later, func.clinic_refuse(literal_column(f"'{REFUSAL}'"))), else_=true()))
        else:
            rows = rows.where(~later)
    entry_cte = insert(entries).from_select(list(columns), rows).returning(entries.c.id).cte("entry")
    stmt = (
        insert(audits)
        .from_select([*_AUDIT_COLUMNS, "subject_id"], select(*_typed(audits, "a_", _AUDIT_COLUMNS), entry_cte.c.id))
        .returning(audits.c.subject_id)
        .add_cte(
            update(chains)
            .where(chains.c.location_id == bindparam("h_location_id", type_=chains.c.location_id.type))
            .values(
                head_seq=bindparam("h_seq", type_=chains.c.head_seq.type),
                head_hash=bindparam("h_hash", type_=chains.c.head_hash.type),
            )
            .cte("head")
        )
    )
    if container:
        stmt = stmt.add_cte(
            update(containers)
            .where(containers.c.id == bindparam("c_id", type_=containers.c.id.type))
            .values(
                balance_ug=bindparam("c_balance_ug", type_=containers.c.balance_ug.type),
                status=bindparam("c_status", type_=containers.c.status.type),
            )
            .cte("balance")
        )
    _APPEND_STATEMENTS[(after_previous, container, late)] = stmt
    return stmt


#: the rule ``clinic_refuse`` names when the late append's DEA-06 check refuses it
REFUSAL = "DEA-06"


def _refused(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    diag = getattr(orig, "diag", None)
    return getattr(orig, "sqlstate", None) == "23514" and getattr(diag, "message_primary", None) == (
        f"clinic refused: {REFUSAL}"
    )


def _append_in_one_statement(
    chain: LedgerChain,
    container: Container | None,
    status_after: str | None,
    fields: dict[str, Any],
    actor: User,
    kind: EntryKind,
    audit_data: dict[str, Any],
    after_previous: str | None,
    entry_id: int | None = None,
) -> LedgerEntry:
    """PostgreSQL: the entry, the chain head, the container's balance and the audit row in one
    statement (data-modifying CTEs), one round trip instead of four, under the locks the caller holds.

    The entry is only inserted if no movement of its container is dated after it (DEA-06): checked in
    this statement, whose snapshot is taken after the locks were granted, so it sees the movement of
    a request that held them just before. Nothing inserted means refused: the caller's error rolls
    the whole unit of work back, the updates with it.
    """
    checked = after_previous is not None and container is not None
    event = audit.event_values(actor=actor, tag=ledger_tag(kind.value), subject=("ledger_entry", None), data=audit_data)
    params: dict[str, Any] = {"e_" + k: fields[k] for k in _ENTRY_COLUMNS}
    params.update(("a_" + k, event[k]) for k in _AUDIT_COLUMNS)
    params.update(h_location_id=chain.location_id, h_seq=fields["seq"], h_hash=fields["hash"])
    if checked:
        params.update(x_container_id=fields["container_id"], x_occurred_at=fields["occurred_at"])
    if container is not None:
        params.update(c_id=container.id, c_balance_ug=fields["balance_after_ug"], c_status=status_after)
    if entry_id is not None:  # sent with the COMMIT; a refusal fails it, and is answered as DEA-06's error
        params["e_id"] = entry_id
        at, field, container_id = fields["occurred_at"], after_previous, fields["container_id"]

        def on_error(exc: BaseException) -> None:
            if checked and _refused(exc):
                assert field is not None
                checks.after_previous_movements(at=at, field=field, container_ids=(container_id,))

        stmt = _append_statement(after_previous=checked, container=container is not None, late=True)
        tx.with_commit_statement(stmt, params, on_error=on_error)
    else:
        stmt = _append_statement(after_previous=checked, container=container is not None)
        entry_id = db.session.execute(stmt, params).scalar()
    if entry_id is None:  # refused by the DEA-06 condition: the same error the other backends give
        assert after_previous is not None
        assert container is not None
        checks.after_previous_movements(at=fields["occurred_at"], field=after_previous, container_ids=(container.id,))
        raise AssertionError("an entry refused for no reason")  # pragma: no cover
    # The rows are written: the ORM is told so, so it neither writes them again nor reads them back.
    set_committed_value(chain, "head_seq", fields["seq"])
    set_committed_value(chain, "head_hash", fields["hash"])
    if container is not None:
        set_committed_value(container, "balance_ug", fields["balance_after_ug"])
        set_committed_value(container, "status", status_after)
    # The entry as the ORM would load it (its values committed, no history): filled in directly, since
    # setting ~20 attributes through the instrumented constructor, each with its events, cost as much
    # as the rest of the append, and this runs under the chain lock.
    entry = LedgerEntry._sa_class_manager.new_instance()
    entry.__dict__.update(fields, id=entry_id, container=container)
    make_transient_to_detached(entry)
    db.session.add(entry)
    audit.touched("ledger_entry", entry_id)
    return entry


def list_entries(
    *,
    location_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    container_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
    drug_id: int | None = None,
    schedule: str | None = None,
    location_ids: Collection[int] | None = None,
) -> list[LedgerEntry]:
    """One page of entries. ``schedule`` keeps the entries of that schedule's drugs, so "every
    Schedule III record of this registrant for a period" is one query (DEA-09/10); counts and
    inventories name no single drug and are found by their kind."""
    q = select(LedgerEntry).order_by(LedgerEntry.id).limit(limit)
    if drug_id is not None:
        q = q.where(LedgerEntry.drug_id == drug_id)
    if schedule is not None:
        q = q.where(LedgerEntry.drug_id.in_(select(Drug.id).where(Drug.schedule == schedule)))
    if location_id is not None:
        q = q.where(LedgerEntry.location_id == location_id)
    if location_ids is not None:  # SYS-11, SYS-13: only the locations the reader belongs to
        q = q.where(LedgerEntry.location_id.in_(sorted(location_ids)))
    if since is not None:
        q = q.where(LedgerEntry.occurred_at >= since)
    if until is not None:
        q = q.where(LedgerEntry.occurred_at < until)
    if kind is not None:
        q = q.where(LedgerEntry.kind == kind)
    if container_id is not None:
        q = q.where(LedgerEntry.container_id == container_id)
    if after_id is not None:
        q = q.where(LedgerEntry.id > after_id)
    return list(db.session.scalars(q))
