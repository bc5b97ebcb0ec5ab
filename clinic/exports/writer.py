"""Writing an export bundle: the file, the rows left out of a filtered kind, the signed manifest (SYS-05).

Rows are read in keyset batches of the chain segment (seq ranges on the ledger, ids on the logs),
written as they come and let go: memory stays flat however long the period (RELIABILITY §1.3). On
PostgreSQL a CSV ledger export's rows are built by the database itself, one COPY streamed into the
file (:mod:`clinic.exports.copysql`, the same bytes); the left-out rows still come through Python.
Every file is written under a temporary name and renamed only once the manifest is signed, so a
failed export never leaves a truncated file that looks finished.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from clinic.audit.models import AccessEvent, AuditEvent
from clinic.auth.models import User
from clinic.core import replica, signing
from clinic.core.errors import NotFound, ValidationFailed
from clinic.core.time import utcnow
from clinic.exports import verifier as proof
from clinic.extensions import db
from clinic.inventory import anchors, integrity, purge
from clinic.inventory.chain import GENESIS, committed, get_path, phi_paths, record_hash, shadow_step
from clinic.inventory.models import Checkpoint, Drug, Form1Salts, LedgerEntry, LossReport
from clinic.inventory.records import drug_record
from clinic.locations.models import Location

BATCH = 2000
FORMATS = ("csv", "jsonl", "pdf")
#: a PDF is laid out in memory by WeasyPrint: past this, CSV or JSON Lines
PDF_MAX_ROWS = 5000

_LEDGER = LedgerEntry.__table__


@dataclass
class Spec:
    kind: str
    file_format: str
    since: datetime
    until: datetime
    profile: str = "dea-inspection"
    location_id: int | None = None
    schedule: str | None = None
    drug_id: int | None = None
    generated_by: dict[str, Any] = field(default_factory=dict)
    disclosure: dict[str, Any] | None = None

    def check(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.kind not in proof.KINDS:
            errors["kind"] = ["One of: " + ", ".join(proof.KINDS) + "."]
        if self.file_format not in FORMATS:
            errors["format"] = ["One of: csv, jsonl, pdf."]
        if self.profile not in proof.PROFILES:
            errors["profile"] = ["One of: " + ", ".join(proof.PROFILES) + "."]
        if self.until <= self.since:
            errors["until"] = ["Must be after since."]
        if self.kind in proof.KINDS and proof.KINDS[self.kind][0] is not None and self.location_id is None:
            errors["location_id"] = ["A ledger export is of one registrant: name its location."]
        if errors:
            raise ValidationFailed(errors=errors)

    def filters(self) -> dict[str, Any]:
        return {
            "location_id": self.location_id,
            "since": proof.time_text(self.since.isoformat()),
            "until": proof.time_text(self.until.isoformat()),
            "schedule": self.schedule,
            "drug_id": self.drug_id,
        }


@dataclass
class Result:
    manifest: dict[str, Any]
    rows: int
    patients: set[int]
    paths: list[Path]


Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


class _Sink:
    """One output file written under a temporary name, hashed as it is written (no second read)."""

    def __init__(self, path: Path, role: str) -> None:
        self.path, self.role = path, role
        self.tmp = path.with_name(path.name + ".part")
        self.fh = self.tmp.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0
        #: written by someone else (a PDF renderer): hashed from the file at close
        self.external = False

    def write(self, text: str) -> None:
        self.write_bytes(text.encode())

    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.size += len(data)

    def mark(self) -> tuple[int, Any]:
        """Where the file stands, to come back to with :meth:`rewind`."""
        return self.size, self.digest.copy()

    def rewind(self, mark: tuple[int, Any]) -> None:
        self.size, digest = mark
        self.digest = digest.copy()
        self.fh.seek(self.size)
        self.fh.truncate()

    def close(self) -> dict[str, Any]:
        self.fh.close()
        if self.external:
            digest = hashlib.sha256()
            with self.tmp.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            self.digest, self.size = digest, self.tmp.stat().st_size
        return {
            "name": self.path.name,
            "role": self.role,
            "sha256": self.digest.hexdigest(),
            "bytes": self.size,
        }

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def keep(self) -> None:
        os.replace(self.tmp, self.path)


_MUST_QUOTE = re.compile('[",\r\n]')


def csv_line(values: list[Any]) -> str:
    """One CSV record as ``csv.writer`` (QUOTE_MINIMAL, "\\n" line ends) writes it, spelled directly:
    a cell is quoted, its quotes doubled, when it holds a comma, a quote, "\\n" or "\\r" (csv.writer
    leaves a bare "\\r" unquoted, which csv.reader then splits the row on); None is empty. About
    twice as fast as the csv module on the long quoted record cell; test_csv_line_is_the_csv_modules
    checks the bytes against it."""
    cells = []
    for v in values:
        if type(v) is not str:
            v = "" if v is None else proof.text(v)
        if v and _MUST_QUOTE.search(v) is not None:
            v = '"' + v.replace('"', '""') + '"'
        cells.append(v)
    return ",".join(cells) + "\n"


class _RowWriter:
    def __init__(self, sink: _Sink, kind: str, file_format: str) -> None:
        self.sink, self.csv = sink, file_format == "csv"
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")
        #: where the proof columns (objects, written as JSON) are; a row's keys are in header order
        self.proof_at = [i for i, h in enumerate(proof.headers(kind)) if h in proof.PROOF_COLUMNS]
        self.lines: list[str] = []
        if self.csv:
            self.writer.writerow(proof.headers(kind))
            self._flush()

    def _flush(self) -> None:
        self.sink.write(self.buffer.getvalue())
        self.buffer.seek(0)
        self.buffer.truncate()

    def row(self, row: dict[str, Any]) -> None:
        if self.csv:
            values = list(row.values())  # None is written as an empty cell
            for i in self.proof_at:
                if values[i] != "" and values[i] is not None:
                    values[i] = proof.text(values[i])
            self.lines.append(csv_line(values))
            if len(self.lines) >= 512:
                self._flush_lines()
        else:
            self.sink.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")

    def line(self, values: list[Any]) -> None:
        """A CSV row already in header order, its proof cells already text."""
        self.lines.append(csv_line(values))
        if len(self.lines) >= 512:
            self._flush_lines()

    def _flush_lines(self) -> None:
        self.sink.write("".join(self.lines))
        self.lines.clear()

    def close(self) -> None:
        if self.csv:
            self._flush_lines()


def _names() -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    users = {str(i): n for i, n in db.session.execute(select(User.id, User.name))}
    drugs = {}
    for drug in db.session.scalars(select(Drug)):
        rec = drug_record(drug)
        rec["name"] = rec.pop("drug_name")
        drugs[str(drug.id)] = rec
    return users, drugs


def _checkpoint_at_head(location_id: int) -> Checkpoint | None:
    """Sign the chain heads now and take this location's latest checkpoint: the segment ends there
    (entries recorded while the export runs are after it). Two exports, or an export and the beat
    task, may sign the same head at once on PostgreSQL: the loser's savepoint rolls back and it
    reads the winner's checkpoint."""
    for _ in range(3):
        try:
            with db.session.begin_nested():
                integrity.sign_checkpoints()
            break
        except IntegrityError:
            continue
    return db.session.scalar(
        select(Checkpoint).where(Checkpoint.location_id == location_id).order_by(Checkpoint.seq.desc()).limit(1)
    )


def _shadow_before(location_id: int, first: int) -> str:
    """The re-anchoring digest over the form-1 entries before the segment (none: the genesis; from a
    purge's anchor when the oldest entries were purged)."""
    shadow, seq = GENESIS, 0
    anchor = anchors.newest(location_id)
    if anchor is not None and anchor.through_seq < first:
        shadow, seq = anchors.Cut.of(anchor).shadow, anchor.through_seq
    while seq < first - 1:
        rows = db.session.execute(
            select(_LEDGER, Form1Salts.salts)
            .outerjoin(
                Form1Salts, (Form1Salts.location_id == _LEDGER.c.location_id) & (Form1Salts.seq == _LEDGER.c.seq)
            )
            .where(_LEDGER.c.location_id == location_id, _LEDGER.c.seq > seq, _LEDGER.c.seq < first)
            .where(_LEDGER.c.phi_salts.is_(None))
            .order_by(_LEDGER.c.seq)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for r in rows:
            fields = r._asdict()
            shadow = shadow_step(shadow, r.hash, record_hash(committed(fields, r.salts or {}), 1))
            seq = r.seq
    return shadow


def _loss_reports(entry_ids: list[int]) -> dict[int, dict[str, Any]]:
    found = {}
    for rep in db.session.scalars(select(LossReport).where(LossReport.entry_id.in_(entry_ids))):
        found[rep.entry_id] = {
            "form_106_discovered_at": proof.format_time(rep.discovered_at),
            "form_106_notice_due_at": proof.format_time(rep.notice_due_at),
            "form_106_notified_at": proof.format_time(rep.notified_at) if rep.notified_at else "",
            "form_106_filing_due_on": rep.filing_due_on.isoformat(),
            "form_106_filed_at": proof.format_time(rep.filed_at) if rep.filed_at else "",
            "form_106": proof.text(rep.form),
        }
    return found


def _batch(stmt: Any) -> tuple[list[str], Sequence[Any]]:
    """A batch of plain rows (column names, value tuples) without ORM or SQLAlchemy row processing
    (a statement with plain bind parameters: no expanding IN).
    The session picks the connection for the statement, so a ``replica.reads()`` block still routes
    it; on PostgreSQL the rows come straight from psycopg's cursor on that connection (timestamptz
    as aware datetimes, JSON parsed: what the Core result gives, for half the work per row)."""
    conn = db.session.connection(bind_arguments={"clause": stmt})
    if conn.dialect.name != "postgresql":
        result = conn.execute(stmt)
        return list(result.keys()), result.all()
    compiled = stmt.compile(dialect=conn.dialect)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), compiled.params)
        return [d.name for d in cursor.description], cursor.fetchall()
    finally:
        cursor.close()


def _ledger_rows(
    spec: Spec, cp: Checkpoint | None, main: _RowWriter, left_out: _Sink, progress: Progress, names: dict[str, Any]
) -> tuple[dict[str, Any] | None, int, set[int], set[str], set[str]]:
    assert spec.location_id is not None
    loc = spec.location_id
    if cp is None:
        return None, 0, set(), set(), set()
    filters = spec.filters()
    first = db.session.scalar(
        select(func.min(LedgerEntry.seq)).where(LedgerEntry.location_id == loc, LedgerEntry.recorded_at >= spec.since)
    )
    # one entry before the period's first recording proves nothing earlier can fall in the period
    a = max(1, (first if first is not None else cp.seq) - 1)
    if a <= purge.purged_through(loc):  # purged since the request (SYS-02): the period is not provable
        raise ValidationFailed(errors={"since": [purge.export_refusal(loc, spec.since) or "The period was purged."]})
    segment = {
        "location_id": loc,
        "first_seq": a,
        "first_prev_hash": db.session.scalar(
            select(LedgerEntry.prev_hash).where(LedgerEntry.location_id == loc, LedgerEntry.seq == a)
        ),
        "last_seq": cp.seq,
        "last_hash": cp.head_hash,
        "shadow_before": _shadow_before(loc, a),
        "checkpoint": json.loads(integrity.SignedHead.of(cp).as_json()),
    }
    allowed = proof.PROFILES[spec.profile]
    total, done, count = cp.seq - a + 1, 0, 0
    patients: set[int] = set()
    users: set[str] = set()
    drugs: set[str] = set()
    seq = a - 1
    renders = [render for _, render in proof.renderers(spec.kind)]
    progress(0, total)
    left_only: Any = None  # the rows PostgreSQL wrote: only the left-out ones remain for the loop
    copied = _copy_csv(spec, (loc, a, cp.seq), main, names) if main.csv else None
    if copied is not None:
        count, patients, users, drugs, left_only = copied
    while seq < cp.seq:
        stmt = (
            select(_LEDGER, Form1Salts.salts)
            .outerjoin(
                Form1Salts, (Form1Salts.location_id == _LEDGER.c.location_id) & (Form1Salts.seq == _LEDGER.c.seq)
            )
            .where(_LEDGER.c.location_id == loc, _LEDGER.c.seq > seq, _LEDGER.c.seq <= cp.seq)
            .order_by(_LEDGER.c.seq)
            .limit(BATCH)
        )
        if left_only is not None:
            stmt = stmt.where(left_only)
        keys, rows = _batch(stmt)
        if not rows:
            break
        at_id = keys.index("id")
        losses = _loss_reports([r[at_id] for r in rows]) if spec.kind == "loss-log" else {}
        for r in rows:
            fields = dict(zip(keys, r, strict=True))
            form = 1 if fields["phi_salts"] is None else 2
            salts = (fields["salts"] or {}) if form == 1 else fields["phi_salts"]
            record = committed(fields, salts)
            record["v"] = form
            drug_id = fields["drug_id"]
            if proof.included(spec.kind, filters, record, names):
                if left_only is not None:  # the SQL filter and included() disagree: never silently
                    raise RuntimeError(f"seq {fields['seq']} was left out by the COPY's filter but belongs in")
                phi = {
                    p: {"salt": salts[p], "value": get_path(fields, p)}
                    for p in phi_paths(fields)
                    if allowed is None or p in allowed
                }
                if main.csv and not losses:  # the cells export_row gives, straight into the line
                    values = [render(record, phi, names) for render in renders]
                    values += (fields["hash"], proof.text(record), proof.text(phi))
                    main.line(values)
                else:
                    row = proof.export_row(spec.kind, record, fields["hash"], phi, names)
                    if losses:
                        row.update(losses.get(fields["id"], {}))
                    if not main.csv:
                        for k, v in row.items():
                            if v is None:
                                row[k] = ""
                    main.row(row)
                count += 1
                if phi and fields["patient_id"] is not None:
                    patients.add(fields["patient_id"])
                for uid in (fields["actor_id"], fields["witness_id"], fields["second_witness_id"]):
                    if uid is not None:
                        users.add(str(uid))
                if drug_id is not None:
                    drugs.add(str(drug_id))
            else:
                left_out.write(
                    json.dumps({"hash": fields["hash"], "record": record}, ensure_ascii=False, separators=(",", ":"))
                    + "\n"
                )
                if drug_id is not None:
                    drugs.add(str(drug_id))  # the verifier checks a schedule filter with it
            seq = fields["seq"]
        done += len(rows)
        if left_only is None:
            progress(done, total)
        if len(rows) < BATCH:  # the last batch: asking again would scan the rest of the segment for nothing
            break
    if left_only is not None:
        progress(total, total)
    return segment, count, patients, users, drugs


def _in_background(bind: Any, query: str) -> Callable[[], list[Any]]:
    """``query``'s rows, read on another connection of ``bind`` in a thread while this one goes on
    (its backend works on the other core); the function returned waits for them. Only for rows
    that cannot change under it: a ledger segment up to a checkpoint is append-only."""
    found: dict[str, Any] = {}

    def read() -> None:
        try:
            raw = bind.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(query)
                found["rows"] = cursor.fetchall()
            finally:
                raw.close()  # back to the pool, rolled back
        except BaseException as exc:  # handed to the waiting thread
            found["error"] = exc

    thread = threading.Thread(target=read, name="clinic-export-summary", daemon=True)
    thread.start()

    def wait() -> list[Any]:
        thread.join()
        if "error" in found:
            raise found["error"]
        return list(found["rows"])

    return wait


def _pg_cursor() -> Any:
    """A psycopg cursor on the connection the session reads the ledger through (replica or primary)."""
    conn = db.session.connection(bind_arguments={"clause": select(_LEDGER)})
    if conn.dialect.name != "postgresql":
        return None
    driver: Any = conn.connection.driver_connection
    if driver.info.encoding != "utf-8":
        return None
    return driver.cursor()


def _copy_csv(
    spec: Spec, segment: tuple[int, int, int], main: _RowWriter, names: dict[str, Any]
) -> tuple[int, set[int], set[str], set[str], Any] | None:
    """A CSV ledger export's rows written by PostgreSQL (COPY ... TO STDOUT WITH CSV), its blocks
    streamed into the file and its digest as they come: see :mod:`clinic.exports.copysql`. Returns
    the rows' count, the patients whose PHI went out, the users and drugs named, and the condition
    selecting the left-out rows, which the Python loop still writes; None (nothing written) when
    the kind, the backend or a row needs the Python path."""
    from psycopg import Error as DriverError

    from clinic.exports import copysql

    where = copysql.included(spec.kind, spec.filters(), names)
    if where is None:
        return None
    cursor = _pg_cursor()
    if cursor is None:
        return None
    allowed = proof.PROFILES[spec.profile]
    mark = main.sink.mark()
    main.close()  # the header line, before the COPY's bytes
    # what the rows name, counted on another connection while the COPY runs: a second pass over
    # the segment's rows that no longer adds to the export's time
    bind = db.session.connection(bind_arguments={"clause": select(_LEDGER)}).engine
    summary = _in_background(bind, copysql.summary_query(where, allowed, segment))
    try:
        cursor.execute("SAVEPOINT clinic_export_copy")
        try:
            cursor.execute(copysql.shapes_query(where, segment))
            shapes = [tuple(keys or ()) for (keys,) in cursor.fetchall()]
            # the entries before the last one without a stored record (migration 0021) have their
            # record rebuilt where missing; the rest send theirs as it is, a cheaper query
            cursor.execute(copysql.last_without_record(segment))
            (last,) = cursor.fetchone()
            loc, first, end = segment
            parts = [((loc, first, last), False)] if last is not None else []
            if last is None or last < end:
                parts.append(((loc, first if last is None else last + 1, end), True))
            pending = bytearray()  # COPY sends a message per row: written and hashed a megabyte at a time
            count = 0
            for part, stored in parts:
                query = copysql.select_rows(spec.kind, allowed, where, part, names, shapes, stored=stored)
                with cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
                    for block in copy:
                        pending += block
                        if len(pending) >= 1 << 20:
                            main.sink.write_bytes(pending)
                            pending.clear()
                count += cursor.rowcount
            main.sink.write_bytes(pending)
        except DriverError as exc:
            cursor.execute("ROLLBACK TO SAVEPOINT clinic_export_copy")
            main.sink.rewind(mark)
            # the SQLSTATE only: a driver's message can quote the value it could not read (a name)
            current_app.logger.info("export: rows written in Python (SQLSTATE %s)", exc.sqlstate or type(exc).__name__)
            return None
        cursor.execute("RELEASE SAVEPOINT clinic_export_copy")
        taken, patients, users, drugs = _tally(summary())
        if taken != count:  # entries this transaction wrote are not seen from the other connection
            cursor.execute(copysql.summary_query(where, allowed, segment))
            taken, patients, users, drugs = _tally(cursor.fetchall())
    finally:
        cursor.close()
        with contextlib.suppress(Exception):  # waited for on every path (its connection goes back
            summary()  # to the pool); its error, if any, was raised above or no longer matters
    if taken != count:
        raise RuntimeError(f"the COPY wrote {count} rows where {taken} belong in")
    left_out = copysql.included(spec.kind, spec.filters(), names, e="ledger_entries")
    return count, patients, users, drugs, text(f"NOT {left_out}")


def _tally(groups: list[Any]) -> tuple[int, set[int], set[str], set[str]]:
    """The summary query's groups as the rows taken, the patients whose PHI they carry, the users
    and the drugs they name."""
    patients: set[int] = set()
    users: set[str] = set()
    drugs: set[str] = set()
    taken = 0
    for inc, patient, *people, drug, n in groups:
        if drug is not None:
            drugs.add(str(drug))
        if inc:
            taken += n
            users.update(str(u) for u in people if u is not None)
            if patient is not None:
                patients.add(patient)
    return taken, patients, users, drugs


_TABLES: dict[str, tuple[Any, str]] = {"access-log": (AccessEvent, "user_id"), "audit-trail": (AuditEvent, "actor_id")}


def _table_rows(spec: Spec, main: _RowWriter, progress: Progress, names: dict[str, Any]) -> int:
    model, who = _TABLES[spec.kind]
    where = (model.occurred_at >= spec.since, model.occurred_at < spec.until)
    total = db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0
    progress(0, total)
    last, done = 0, 0
    while True:
        rows = db.session.scalars(select(model).where(*where, model.id > last).order_by(model.id).limit(BATCH)).all()
        if not rows:
            break
        for ev in rows:
            values = {c.name: getattr(ev, c.name) for c in model.__table__.columns}
            values["occurred_at"] = proof.seal_time(ev.occurred_at)
            uid = values.get(who)
            values["user" if who == "user_id" else "actor"] = names["users"].get(str(uid), "") if uid else ""
            main.row({h: proof.text(values.get(spec_[2:])) for h, spec_ in proof.KINDS[spec.kind][1]})
            last = ev.id
            db.session.expunge(ev)
        done += len(rows)
        progress(done, total)
    return done


def _log_seals(spec: Spec, sink: _Sink) -> dict[str, Any]:
    """The seals over the exported rows' ids, one JSON line each, with the leaves of the rows of
    their ranges that the period leaves out: clinic-verify recomputes every range's Merkle root from
    them and the exported rows (SYS-05, HIP-04). The seals run from the one holding the last row
    before the period's first to the one holding the first row after the period's last, so the
    verifier sees both edges; rows past the newest seal are counted as not yet sealed."""
    from clinic.audit import seals
    from clinic.audit.models import LogSeal, Purge

    stream = proof.LOG_STREAMS[spec.kind]
    model = _TABLES[spec.kind][0]
    newest = seals.last_seal(stream)
    through = newest.last_id if newest is not None else 0
    purged = (
        db.session.scalar(select(func.max(Purge.through_id)).where(Purge.stream == stream, Purge.outcome == "done"))
        or 0
    )
    in_period = (model.occurred_at >= spec.since) & (model.occurred_at < spec.until)
    lo, hi = db.session.execute(select(func.min(model.id), func.max(model.id)).where(in_period)).one()
    carried: list[LogSeal] = []
    if lo is not None and lo <= through:
        lo_edge = db.session.scalar(select(func.max(model.id)).where(model.id < lo)) or lo
        hi_edge = db.session.scalar(select(func.min(model.id)).where(model.id > hi)) or hi
        carried = list(
            db.session.scalars(
                select(LogSeal)
                .where(LogSeal.stream == stream, LogSeal.last_id >= lo_edge, LogSeal.first_id <= hi_edge)
                .order_by(LogSeal.seq)
            )
        )
    columns = [model.__table__.c[name] for name in proof.STREAM_FIELDS[stream]]
    for seal in carried:
        left = db.session.execute(
            select(*columns).where(model.id >= seal.first_id, model.id <= seal.last_id, ~in_period).order_by(model.id)
        ).mappings()
        line = {k: (proof.seal_time(v) if isinstance(v, datetime) else v) for k, v in seals.seal_fields(seal).items()}
        line["left_out"] = [
            {
                "id": r["id"],
                "occurred_at": proof.seal_time(r["occurred_at"]),
                "leaf": proof.row_digest(stream, dict(r)).hex(),
            }
            for r in left
        ]
        sink.write(json.dumps(line, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n")
    return {"stream": stream, "seals": len(carried), "sealed_through": through, "purged_through": purged}


def _check_pdf_size(rows: int) -> None:
    if rows > PDF_MAX_ROWS:
        raise ValidationFailed(
            errors={"format": [f"A PDF holds at most {PDF_MAX_ROWS} rows; this export has {rows}: use csv."]}
        )


def write(spec: Spec, out: Path, progress: Progress = _no_progress) -> Result:
    """Write the bundle for ``spec`` at ``out`` (plus ``out.manifest.json`` and, when needed, the
    left-out rows and a PDF's rows beside it). Raises and leaves nothing behind on any failure."""
    spec.check()
    registrant = None
    if spec.location_id is not None:
        location = db.session.get(Location, spec.location_id)
        if location is None:
            raise NotFound("No such location")
        registrant = {"name": location.name, "address": location.address, "dea_registration": location.dea_registration}
    out.parent.mkdir(parents=True, exist_ok=True)
    users, drugs = _names()
    names: dict[str, Any] = {"users": users, "drugs": drugs}
    is_pdf = spec.file_format == "pdf"
    main_sink = _Sink(out.with_name(out.name + ".rows.jsonl") if is_pdf else out, "rows" if is_pdf else "export")
    sinks = [main_sink]
    try:
        main = _RowWriter(main_sink, spec.kind, "jsonl" if is_pdf else spec.file_format)
        segment: dict[str, Any] | None = None
        sealed: dict[str, Any] | None = None
        patients: set[int] = set()
        if proof.KINDS[spec.kind][0] is None:
            seal_sink = _Sink(out.with_name(out.name + ".seals.jsonl"), "seals")
            sinks.append(seal_sink)
            with replica.reads(replica.flushed_lsn()) as where:
                sealed = _log_seals(spec, seal_sink)
                rows = _table_rows(spec, main, progress, names)
            used_users, used_drugs = set(users), set[str]()
        else:
            left = _Sink(out.with_name(out.name + ".left-out.jsonl"), "left-out")
            sinks.append(left)
            # Signed (a write) on the primary; the segment it closes is then read where reads() says:
            # the replica once it has replayed past this point, else the primary.
            cp = _checkpoint_at_head(spec.location_id)  # type: ignore[arg-type]
            with replica.reads(replica.flushed_lsn()) as where:
                segment, rows, patients, used_users, used_drugs = _ledger_rows(spec, cp, main, left, progress, names)
        main.close()
        files = [s.close() for s in sinks]
        manifest: dict[str, Any] = {
            "format": proof.MANIFEST_FORMAT,
            "kind": spec.kind,
            "file_format": spec.file_format,
            "profile": spec.profile,
            "filters": spec.filters(),
            "registrant": registrant,
            "generated_at": proof.format_time(utcnow()),
            "generated_by": spec.generated_by,
            "disclosure": spec.disclosure,
            "rows": rows,
            "columns": proof.headers(spec.kind),
            "names": {
                "users": {k: users[k] for k in sorted(used_users) if k in users},
                "drugs": {k: drugs[k] for k in sorted(used_drugs) if k in drugs},
            },
            "segment": segment,
        }
        if sealed is not None:
            manifest["sealed"] = sealed
        if replica.configured(current_app):
            # where the rows were read, at which WAL position, and why not the replica if it was not
            manifest["read"] = where.as_dict()
        if is_pdf:
            _check_pdf_size(rows)
            from clinic.exports import pdf

            pdf_sink = _Sink(out, "export")
            pdf_sink.fh.close()
            pdf_sink.external = True
            sinks.append(pdf_sink)
            pdf.render(pdf_sink.tmp, manifest, main_sink.tmp)
            files.append(pdf_sink.close())
        manifest["files"] = files
        manifest = proof.sign_manifest(manifest, signing.sign, signing.public_key_hex())
        manifest_sink = _Sink(out.with_name(out.name + ".manifest.json"), "manifest")
        sinks.append(manifest_sink)
        manifest_sink.write(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
        manifest_sink.close()
    except BaseException:
        for s in sinks:
            s.discard()
        raise
    for s in sinks:
        s.keep()
    return Result(manifest, rows, patients, [s.path for s in sinks])


def iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
