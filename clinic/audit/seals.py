"""Seals: signed checkpoints over ranges of the access log and the audit trail (SYS-05, HIP-04).

Requests append rows as before, with no lock and no hash to compute: a row is just an INSERT with
an id from the table's sequence. A periodic task (beat, ``audit.seal_logs``) later seals the rows
that can no longer change, as a Merkle root per range, each seal linking to the one before and
signed with the clinic's Ed25519 key (clinic.core.signing, the key of the ledger's checkpoints).

When is a range closed? On PostgreSQL an id is taken from the sequence when the row is inserted,
but the row is visible only when its transaction commits: id 41 may commit after id 42, or a
minute later. So the sealer (1) reads the sequence's last value H: every id <= H is already handed
out, to a transaction that is open now or finished; (2) then lists the virtual transaction ids of
every transaction open in this database (pg_locks, ``virtualxid``: every transaction holds its own,
from its first statement to its end, with or without a real xid); (3) waits until each of those
has ended. Any transaction that took an id <= H was open before (2), so it is in that list; once
they have all ended, every row with id <= H is committed or never will be, and the range is final.
Nobody waits on the sealer: writers take no lock it holds. A transaction held open longer than the
wait only postpones the seal to a later run.

On SQLite one writer at a time inserts ids in order (max(rowid)+1) and commits before the next
writer starts, so the largest id a read transaction sees is already final.

Each seal is also appended to a file outside the database (beside the ledger's checkpoint log), so
removing the newest seals from the table is found too.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import current_app
from sqlalchemy import Table, func, select, text

from clinic.audit import sealform
from clinic.audit.models import AccessEvent, AuditEvent, LogSeal, Purge
from clinic.core import signing, tx
from clinic.core.time import utcnow
from clinic.extensions import db

TABLES: dict[str, Table] = {"access": AccessEvent.__table__, "audit": AuditEvent.__table__}
LABELS = {"access": "access log", "audit": "audit trail"}


def _columns(stream: str) -> list[Any]:
    table = TABLES[stream]
    return [table.c[name] for name in sealform.STREAM_FIELDS[stream]]


# --- the horizon: the last id no open transaction can still add ---------------------------------


def safe_horizon(stream: str, wait_seconds: float) -> int | None:
    """The largest id below which every row is committed or never will be; None when unknown yet.

    SYS-05: a seal over a range a late commit could still change would prove nothing."""
    table = TABLES[stream]
    if db.engine.dialect.name != "postgresql":
        return db.session.scalar(select(func.max(table.c.id)))
    sequence = db.session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
    # The sequence is read first, the open transactions listed after: that order is the proof.
    # (The name comes from the catalogue, already quoted.)
    last = db.session.execute(text(f"SELECT last_value, is_called FROM {sequence}")).one()  # noqa: S608
    horizon = int(last[0]) if last[1] else int(last[0]) - 1
    db.session.execute(text("SELECT pg_stat_clear_snapshot()"))
    open_now = list(
        db.session.scalars(
            text(
                "SELECT l.virtualxid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'virtualxid' AND l.granted AND l.pid <> pg_backend_pid() "
                "AND (a.datname IS NULL OR a.datname = current_database())"
            )
        )
    )
    deadline = time.monotonic() + wait_seconds
    while open_now:
        open_now = list(
            db.session.scalars(
                text(
                    "SELECT virtualxid FROM pg_locks WHERE locktype = 'virtualxid' AND granted "
                    "AND virtualxid = ANY(:open)"
                ),
                {"open": open_now},
            )
        )
        if not open_now:
            break
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)
    return horizon


# --- sealing -------------------------------------------------------------------------------------


def seal_fields(seal: LogSeal) -> dict[str, Any]:
    return {name: getattr(seal, name) for name in (*sealform.SEAL_FIELDS, "public_key", "signature")}


def last_seal(stream: str) -> LogSeal | None:
    return db.session.scalar(select(LogSeal).where(LogSeal.stream == stream).order_by(LogSeal.seq.desc()).limit(1))


def _range(stream: str, first_id: int, last_id: int) -> tuple[int, str, datetime | None]:
    """Row count, root and newest time of the rows with ids first_id..last_id, as they are now."""
    table = TABLES[stream]
    digests, newest = [], None
    rows = db.session.execute(
        select(*_columns(stream))
        .where(table.c.id >= first_id, table.c.id <= last_id)
        .order_by(table.c.id)
        .execution_options(yield_per=5000)
    )
    for row in rows.mappings():
        digests.append(sealform.row_digest(stream, dict(row)))
        newest = row["occurred_at"] if newest is None else max(newest, row["occurred_at"])
    return len(digests), sealform.range_root(digests), newest


def seal_stream(stream: str, *, max_rows: int | None = None, wait_seconds: float | None = None) -> list[LogSeal]:
    """Seal every closed range of ``stream`` past its last seal, ``max_rows`` rows a seal at most (SYS-05)."""
    cfg = current_app.config
    max_rows = max_rows or int(cfg.get("SEAL_MAX_ROWS", 10_000))
    wait = float(cfg.get("SEAL_WAIT_SECONDS", 10) if wait_seconds is None else wait_seconds)
    if db.engine.dialect.name == "postgresql":  # one sealer per stream at a time; requests never take it
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"clinic.seal.{stream}"})
    previous = last_seal(stream)
    start = previous.last_id + 1 if previous else 1
    horizon = safe_horizon(stream, wait)
    made: list[LogSeal] = []
    table = TABLES[stream]
    while horizon is not None and start <= horizon:
        ids = list(
            db.session.scalars(
                select(table.c.id)
                .where(table.c.id >= start, table.c.id <= horizon)
                .order_by(table.c.id)
                .limit(max_rows)
            )
        )
        if not ids:
            break
        end = ids[-1] if len(ids) == max_rows else horizon
        count, root, newest = _range(stream, start, end)
        assert newest is not None
        now = utcnow()
        body = {
            "stream": stream,
            "seq": previous.seq + 1 if previous else 1,
            "first_id": start,
            "last_id": end,
            "row_count": count,
            "root": root,
            "prev_hash": sealform.seal_hash(seal_fields(previous)) if previous else sealform.GENESIS,
            "last_occurred_at": newest,
            "sealed_at": now,
        }
        seal = LogSeal(**body, public_key=signing.public_key_hex(), signature=signing.sign(sealform.seal_message(body)))
        db.session.add(seal)
        made.append(seal)
        previous, start = seal, end + 1
    db.session.flush()
    if made:
        lines = [_as_json(seal_fields(s)) for s in made]
        tx.after_commit(lambda: _publish(lines))
    return made


def seal_all(**kwargs: Any) -> list[LogSeal]:
    return [s for stream in TABLES for s in seal_stream(stream, **kwargs)]


# --- the copy outside the database ---------------------------------------------------------------


def seal_log_path() -> Path:
    from clinic.inventory.integrity import checkpoint_log_path

    path = checkpoint_log_path()
    return path.with_name(path.stem + ".seals.jsonl")


def _as_json(fields: dict[str, Any]) -> str:
    body = {k: (sealform.format_time(v) if isinstance(v, datetime) else v) for k, v in fields.items()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _publish(lines: list[str]) -> None:
    path = seal_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def outside_seals() -> dict[tuple[str, int], dict[str, Any]]:
    found: dict[tuple[str, int], dict[str, Any]] = {}
    path = seal_log_path()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                raw = json.loads(line)
                found[(str(raw["stream"]), int(raw["seq"]))] = raw
            except (ValueError, KeyError, TypeError):
                found[("?", 0)] = {}
    return found


# --- verifying -----------------------------------------------------------------------------------


@dataclass
class SealReport:
    stream: str
    seals: int = 0
    rows: int = 0
    unsealed: int = 0
    problem: str | None = None
    bad_seal: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def label(self) -> str:
        return LABELS[self.stream]


def signed_by(message: bytes, public_key: str, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _purged_through(stream: str, trust: Any) -> tuple[int, datetime | None, str | None]:
    """The last seal whose rows a signed purge removed, that purge's cutoff, or a problem."""
    through, cutoff = 0, None
    for p in db.session.scalars(
        select(Purge).where(Purge.stream == stream, Purge.outcome == "done").order_by(Purge.id)
    ):
        fields = {k: getattr(p, k) for k in ("stream", "through_seal", "through_id", "cutoff", "requested_at")}
        if not (p.public_key and p.signature and signed_by(sealform.purge_message(fields), p.public_key, p.signature)):
            return through, cutoff, f"purge {p.id}'s signature is invalid"
        if not trust.trusts(p.public_key):
            return through, cutoff, f"purge {p.id} is signed by another key, not the pinned one"
        if p.through_seal > through:
            through, cutoff = p.through_seal, p.cutoff
    return through, cutoff, None


def verify_stream(stream: str, trust: Any, outside: dict[tuple[str, int], dict[str, Any]]) -> SealReport:
    """SYS-05: walk the seals of ``stream``; name the first row edited, deleted or inserted, or seal
    re-signed or removed."""
    report = SealReport(stream)
    label = LABELS[stream]
    purged, cutoff, problem = _purged_through(stream, trust)
    if problem:
        report.problem = problem
        return report
    prev_hash, expected_seq, expected_first = sealform.GENESIS, 1, 1
    for seal in db.session.scalars(select(LogSeal).where(LogSeal.stream == stream).order_by(LogSeal.seq)):
        fields = seal_fields(seal)
        n = seal.seq
        report.bad_seal = n
        if n != expected_seq:
            report.problem, report.bad_seal = f"{label} seal {expected_seq} is missing: it was removed", expected_seq
            return report
        if not signed_by(sealform.seal_message(fields), seal.public_key, seal.signature):
            report.problem = f"{label} seal {n}'s signature is invalid: the seal was altered"
            return report
        if not trust:
            report.problem = "no pinned key to check the seals against: set CLINIC_CHECKPOINT_KEY_FINGERPRINTS"
            return report
        if not trust.trusts(seal.public_key):
            report.problem = (
                f"{label} seal {n} is signed by another key (fingerprint "
                f"{signing.fingerprint(seal.public_key)[:16]}), not the pinned one: it was re-signed"
            )
            return report
        if seal.prev_hash != prev_hash:
            report.problem = f"{label} seal {n} does not link to seal {n - 1}: seal {n - 1} was altered or re-signed"
            return report
        copy = outside.get((stream, n))
        if copy is not None and copy != json.loads(_as_json(fields)):
            report.problem = f"{label} seal {n} differs from its copy in the seal log: it was altered or re-signed"
            return report
        if seal.first_id != expected_first:
            report.problem = f"{label} seal {n} does not start where seal {n - 1} ended"
            return report
        count, root, _ = _range(stream, seal.first_id, seal.last_id)
        if n <= purged:
            if count:
                report.problem = f"{label} seal {n}: {count} row(s) inserted into a purged range"
                return report
            if cutoff is None or seal.last_occurred_at >= cutoff:
                report.problem = f"{label} seal {n}'s rows were removed before their retention ended"
                return report
        elif count < seal.row_count:
            report.problem = (
                f"{label} seal {n} (ids {seal.first_id}-{seal.last_id}): {seal.row_count - count} row(s) deleted"
            )
            return report
        elif count > seal.row_count:
            report.problem = (
                f"{label} seal {n} (ids {seal.first_id}-{seal.last_id}): {count - seal.row_count} row(s) inserted"
            )
            return report
        elif root != seal.root:
            report.problem = f"{label} seal {n} (ids {seal.first_id}-{seal.last_id}): a row was edited"
            return report
        report.seals, report.rows = n, report.rows + count
        prev_hash, expected_seq, expected_first = sealform.seal_hash(fields), n + 1, seal.last_id + 1
    report.bad_seal = None
    removed = sorted(seq for (s, seq) in outside if s == stream and seq >= expected_seq)
    if removed:
        report.problem, report.bad_seal = (
            f"{label} seal {removed[0]} is in the seal log but was removed from the database",
            removed[0],
        )
        return report
    table = TABLES[stream]
    report.unsealed = (
        db.session.scalar(select(func.count()).select_from(table).where(table.c.id >= expected_first)) or 0
    )
    return report


def verify_all(trust: Any | None = None) -> list[SealReport]:
    from clinic.inventory.integrity import pinned_trust

    trust = trust if trust is not None else pinned_trust()
    outside = outside_seals()
    if ("?", 0) in outside:
        return [SealReport("access", problem=f"{seal_log_path()} has a line that is not a seal")]
    return [verify_stream(stream, trust, outside) for stream in TABLES]
