"""Re-walking the hash chains, and signed checkpoints of their heads (SYS-05, F5-F7)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import current_app
from sqlalchemy import select

from clinic.core import signing, tx
from clinic.core.fields import format_mg
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory import anchors
from clinic.inventory.anchors import Cut
from clinic.inventory.chain import (
    GENESIS,
    HASHED_FIELDS,
    checkpoint_message,
    committed,
    committed_record,
    entry_hash,
    format_time,
    record_body_hash,
    record_hash,
    shadow_step,
)
from clinic.inventory.models import (
    Checkpoint,
    Container,
    EntryKind,
    Form1Salts,
    LedgerAnchor,
    LedgerChain,
    LedgerEntry,
)
from clinic.inventory.state import next_site, next_status
from clinic.locations.models import Location


@dataclass
class ChainReport:
    location_id: int
    entries: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def entry_fields(entry: LedgerEntry) -> dict[str, Any]:
    return {**{name: getattr(entry, name) for name in HASHED_FIELDS}, "phi_salts": entry.phi_salts}


def _content_problem(e: LedgerEntry) -> str | None:
    """The entry's hash against its fields; and its stored committed record (migration 0021), which
    an export sends as the entry's record, against the one its fields give, byte for byte."""
    fields = entry_fields(e)
    if e.phi_salts is None:  # form 1: no record is stored for it (only form 2's is)
        if entry_hash(fields) != e.hash:
            return "the entry's content does not match its hash"
        if e.committed_record is not None:
            return "the entry's stored committed record does not match its content"
        return None
    record = committed_record(fields)
    if record_body_hash(record, e.prev_hash) != e.hash:
        return "the entry's content does not match its hash"
    if e.committed_record is not None and e.committed_record.encode() != record:
        return "the entry's stored committed record does not match its content"
    return None


class Form1Anchor:
    """The re-anchoring check (HIP-15): form-1 entries (hashed with PHI in the clear) come first,
    and the chain's first form-2 entry is the re-anchoring one, whose shadow digest binds each of
    them to its committed form. A form-1 entry after it, or a wrong digest, is a break."""

    def __init__(self, location_id: int) -> None:
        self.location_id = location_id
        self.shadow, self.last_form1, self.anchored = GENESIS, 0, False
        self.salts: dict[int, dict[str, str]] = {}

    def load_salts(self, first: int, last: int) -> None:
        rows = db.session.execute(
            select(Form1Salts.seq, Form1Salts.salts).where(
                Form1Salts.location_id == self.location_id, Form1Salts.seq.between(first, last)
            )
        )
        self.salts = {seq: salts for seq, salts in rows}  # noqa: C416 - rows are Row tuples

    def step(self, e: LedgerEntry) -> str | None:
        if e.phi_salts is None:
            if self.anchored:
                return "a form-1 entry follows the chain's re-anchoring (PHI hashed in the clear)"
            try:
                inner = record_hash(committed(entry_fields(e), self.salts.get(e.seq, {})), 1)
            except KeyError:
                return "a form-1 entry's PHI salts are missing"
            self.shadow, self.last_form1 = shadow_step(self.shadow, e.hash, inner), e.seq
            return None
        if self.last_form1 and not self.anchored:
            self.anchored = True
            anchor = (e.details or {}).get("reanchor") or {}
            if anchor.get("through_seq") != self.last_form1 or anchor.get("shadow") != self.shadow:
                return "the re-anchoring entry does not match the form-1 entries before it"
        return None


@dataclass(frozen=True)
class SignedHead:
    """A checkpoint, from the database, the out-of-band log, or a file an auditor kept."""

    location_id: int
    seq: int
    head_hash: str
    signed_at: str
    public_key: str
    signature: str
    source: str = "database"

    @classmethod
    def of(cls, cp: Checkpoint) -> SignedHead:
        return cls(cp.location_id, cp.seq, cp.head_hash, format_time(cp.signed_at), cp.public_key, cp.signature)

    def as_json(self) -> str:
        body = {
            k: getattr(self, k) for k in ("location_id", "seq", "head_hash", "signed_at", "public_key", "signature")
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass
class Trust:
    """The keys a checkpoint may be signed with: pinned, never read from the checkpoint itself."""

    public_keys: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.public_keys or self.fingerprints)

    def trusts(self, public_key: str) -> bool:
        try:
            return public_key in self.public_keys or signing.fingerprint(public_key) in self.fingerprints
        except ValueError:
            return False


def pinned_trust(public_keys: tuple[str, ...] = ()) -> Trust:
    """SYS-05: ``--public-key`` when given; else the configured fingerprints; else the signing key file's."""
    if public_keys:
        return Trust(public_keys=frozenset(public_keys))
    configured = current_app.config.get("CHECKPOINT_KEY_FINGERPRINTS") or ()
    if isinstance(configured, str):
        configured = [p for p in configured.replace(";", ",").split(",") if p.strip()]
    if configured:
        return Trust(fingerprints=frozenset(str(f).strip().lower() for f in configured))
    own = signing.public_key_of_file()
    return Trust(public_keys=frozenset({own})) if own else Trust()


def checkpoint_log_path() -> Path:
    """Where signed checkpoints are also written, outside the database (SYS-05): someone who can
    edit the tables can delete a tail with its checkpoint rows, but not this file's copy. One file
    per database, so two databases on one instance folder never read each other's checkpoints."""
    configured = current_app.config.get("CHECKPOINT_LOG")
    if configured:
        return Path(configured)
    url = db.engine.url.render_as_string(hide_password=True)
    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(current_app.instance_path) / "checkpoints" / f"{name}.jsonl"


def read_checkpoint_file(path: Path, source: str) -> list[SignedHead]:
    heads: list[SignedHead] = []
    if not path.exists():
        return heads
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            heads.append(
                SignedHead(
                    int(raw["location_id"]),
                    int(raw["seq"]),
                    str(raw["head_hash"]),
                    str(raw["signed_at"]),
                    str(raw["public_key"]),
                    str(raw["signature"]),
                    source,
                )
            )
        except (ValueError, KeyError, TypeError):
            heads.append(SignedHead(0, 0, "", "", "", "", f"{source} (unreadable line)"))
    return heads


def _publish(heads: list[SignedHead]) -> None:
    path = checkpoint_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for head in heads:
            fh.write(head.as_json() + "\n")


def walk(
    location_id: int, start: Cut, batch: int = 2000, upto: int | None = None
) -> tuple[Cut, int | None, str | None]:
    """Walk the chain on from ``start`` (the genesis, or a purge's anchor) to its end, or to ``upto``:
    each entry's seq, link, hash and form-1 re-anchoring, and every container's running figures.
    Returns where the walk stands and, on a break, its seq and what is wrong."""
    cut = Cut(start.seq, start.head_hash, {cid: list(row) for cid, row in start.containers.items()}, start.opened)
    anchor = Form1Anchor(location_id)
    anchor.shadow, anchor.last_form1, anchor.anchored = start.shadow, start.last_form1, start.anchored
    state, expected_seq = cut.containers, cut.seq + 1
    while upto is None or expected_seq <= upto:
        stmt = select(LedgerEntry).where(LedgerEntry.location_id == location_id, LedgerEntry.seq >= expected_seq)
        if upto is not None:
            stmt = stmt.where(LedgerEntry.seq <= upto)
        rows = db.session.scalars(stmt.order_by(LedgerEntry.seq).limit(batch)).all()
        if not rows:
            break
        if rows[0].phi_salts is None:
            anchor.load_salts(rows[0].seq, rows[-1].seq)
        for e in rows:
            if e.seq != expected_seq:
                return cut, expected_seq, f"seq {expected_seq} is missing"
            if e.prev_hash != cut.head_hash:
                return cut, e.seq, "prev_hash does not continue the chain"
            if (broken := _content_problem(e)) is not None:
                return cut, e.seq, broken
            if (broken := anchor.step(e)) is not None:
                return cut, e.seq, broken
            if e.kind == EntryKind.initial_inventory and cut.opened is None:
                cut.opened = (e.seq, e.occurred_at)
            if e.container_id is not None:
                balance, status, site, _ = state.get(e.container_id, (0, None, None, 0))
                balance += e.delta_ug
                if balance < 0 or balance != e.balance_after_ug:
                    return cut, e.seq, "running balance is wrong"
                details = e.details or {}
                status = next_status(status, kind=e.kind, delta_ug=e.delta_ug, balance_after=balance, details=details)
                site = next_site(site, kind=e.kind, details=details)
                state[e.container_id] = [balance, status, site, e.seq]
            cut.seq, cut.head_hash, expected_seq = e.seq, e.hash, e.seq + 1
            db.session.expunge(e)  # long chains: keep memory flat
    cut.shadow, cut.last_form1, cut.anchored = anchor.shadow, anchor.last_form1, anchor.anchored
    return cut, None, None


def _start(location_id: int, batch: int, trust: Trust) -> tuple[Cut, LedgerAnchor | None, tuple[int, str] | None]:
    """Where the walk starts: the genesis, or the newest purge anchor once every anchor verifies and
    no entry it stands for is still there but different (SYS-02, DEA-08)."""
    found = anchors.anchors_of(location_id)
    for a in found:
        if (problem := anchors.signature_problem(a, trust)) is not None:
            return Cut(), a, (a.through_seq, problem)
    if not found:
        return Cut(), None, None
    last = found[-1]
    left = db.session.scalar(
        select(LedgerEntry.seq)
        .where(LedgerEntry.location_id == location_id, LedgerEntry.seq <= last.through_seq)
        .order_by(LedgerEntry.seq)
        .limit(1)
    )
    if left is None:
        return anchors.Cut.of(last), last, None
    # entries the anchor stands for are present (an insert into the purged range, or a purge that never
    # deleted): they must be the very chain the anchor signed
    cut, bad_seq, broken = walk(location_id, Cut(), batch, upto=last.through_seq)
    if broken is not None or cut.seq != last.through_seq or cut.head_hash != last.head_hash:
        return (
            cut,
            last,
            (
                bad_seq or left,
                f"entries up to seq {last.through_seq} are present but are not the chain the purge anchor signed",
            ),
        )
    return cut, last, None


def verify_location(
    location_id: int,
    batch: int = 2000,
    *,
    trust: Trust | None = None,
    checkpoint_files: tuple[Path, ...] = (),
    outside: dict[int, list[SignedHead]] | None = None,
) -> ChainReport:
    """SYS-05: walk one location's chain (from its purge anchor if entries were purged, SYS-02); then its head,
    its checkpoints against the pinned key (from the database, the out-of-band log and any file given),
    and every stored container balance, status and place against the chain's running figures.

    A purge that commits while the walk runs (PostgreSQL reads each statement afresh) removes
    entries the walk, started before its anchor existed, still expects: a break found then is
    checked again from the new anchor, so a nightly purge is no false alarm."""
    trust = trust if trust is not None else pinned_trust()
    outside = outside if outside is not None else outside_checkpoints(checkpoint_files)
    before = _newest_cut(location_id)
    report = _verify_location(location_id, batch, trust, outside)
    if not report.ok and _newest_cut(location_id) != before:
        report = _verify_location(location_id, batch, trust, outside)
    return report


def _newest_cut(location_id: int) -> int:
    newest = anchors.newest(location_id)
    return newest.through_seq if newest is not None else 0


def _verify_location(location_id: int, batch: int, trust: Trust, outside: dict[int, list[SignedHead]]) -> ChainReport:
    start, anchor, problem = _start(location_id, batch, trust)
    if problem is not None:
        return ChainReport(location_id, start.seq, start.head_hash, problem[1], problem[0])
    cut, bad_seq, broken = walk(location_id, start, batch)
    n, prev, opened = cut.seq, cut.head_hash, cut.opened
    if broken is not None:
        return ChainReport(location_id, n, prev, broken, bad_seq)
    if cut.last_form1 and not cut.anchored:
        return ChainReport(location_id, n, prev, "the form-1 entries have no re-anchoring entry", n + 1)
    chain = db.session.get(LedgerChain, location_id)
    if chain is not None and (chain.head_seq != n or chain.head_hash != prev):
        return ChainReport(
            location_id,
            n,
            prev,
            f"the chain head says seq {chain.head_seq}; entries end at {n}",
            n + 1 if chain.head_seq > n else chain.head_seq,
        )
    if chain is not None and opened is not None and chain.initial_inventory_at != opened[1]:
        # the earliest time an entry may name (DEA-06) is the initial inventory's own
        return ChainReport(
            location_id, n, prev, "the chain head's initial inventory time is not the entry's", opened[0]
        )
    found = _check_checkpoints(location_id, n, trust, outside, anchor)
    if found is None:
        found = _check_containers(location_id, cut.containers)
    if found is not None:
        return ChainReport(location_id, n, prev, found[1], found[0])
    return ChainReport(location_id, n, prev)


def outside_checkpoints(files: tuple[Path, ...] = ()) -> dict[int, list[SignedHead]]:
    """Checkpoints kept outside the database (the log, and any file given), by location; read once."""
    found: dict[int, list[SignedHead]] = {}
    for path, source in ((checkpoint_log_path(), "the checkpoint log"), *((f, str(f)) for f in files)):
        for head in read_checkpoint_file(path, source):
            found.setdefault(head.location_id, []).append(head)
    return found


def _check_checkpoints(
    location_id: int, n: int, trust: Trust, outside: dict[int, list[SignedHead]], anchor: LedgerAnchor | None = None
) -> tuple[int, str] | None:
    """Every checkpoint signed by the pinned key and matching the chain; one at or before a purge's
    cut (its entry gone) matches the anchor at the anchor's seq, and is taken on its signature before."""
    purged = anchor.through_seq if anchor is not None else 0
    stored = [
        SignedHead.of(cp) for cp in db.session.scalars(select(Checkpoint).where(Checkpoint.location_id == location_id))
    ]
    in_database = {h.seq for h in stored}
    signatures = {h.signature for h in stored}
    copies = [h for h in (*outside.get(location_id, ()), *outside.get(0, ())) if h.signature not in signatures]
    heads = sorted([*stored, *copies], key=lambda h: (h.seq, h.source))
    if heads and not trust:
        return heads[0].seq, (
            "no pinned key to check the checkpoints against: set CLINIC_CHECKPOINT_KEY_FINGERPRINTS, "
            "keep the signing key file, or pass --public-key"
        )
    for h in heads:
        if h.location_id == 0:
            return n + 1, f"{h.source} has a line that is not a checkpoint"
        if not signature_ok(h):
            return h.seq, f"a checkpoint's signature is invalid ({h.source})"
        if not trust.trusts(h.public_key):
            return h.seq, (
                f"the checkpoint at seq {h.seq} ({h.source}) is signed by another key "
                f"(fingerprint {signing.fingerprint(h.public_key)[:16]}), not the pinned one"
            )
        if h.seq > n:
            return n + 1, f"entries signed in a checkpoint ({h.source}, seq {h.seq}) are missing: the tail was cut"
        at = db.session.scalar(
            select(LedgerEntry.hash).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == h.seq)
        )
        if at is None and anchor is not None and h.seq <= purged:
            at = anchor.head_hash if h.seq == purged else h.head_hash  # purged: its signature is the proof
        if at != h.head_hash:
            return h.seq, f"a checkpoint ({h.source}) does not match the chain"
        if h.seq not in in_database:
            return h.seq, f"the checkpoint at seq {h.seq} is in {h.source} but was removed from the database"
    return None


def _check_containers(location_id: int, state: dict[int, list[Any]]) -> tuple[int, str] | None:
    rows = db.session.execute(
        select(Container.id, Container.balance_ug, Container.status, Container.storage_site_id)
        .where(Container.location_id == location_id)
        .order_by(Container.id)
    )
    for cid, balance, status, site in rows:
        if cid not in state:
            return 0, f"container {cid} has no entry in the chain"
        want_balance, want_status, want_site, seq = state[cid]
        if balance != want_balance:
            return seq, (
                f"container {cid}'s stored balance {format_mg(balance)} mg is not the chain's "
                f"{format_mg(want_balance)} mg"
            )
        if status != want_status:
            return seq, f"container {cid}'s stored status {status} is not the chain's {want_status}"
        if site != want_site:
            return seq, f"container {cid}'s storage site {site} is not the chain's {want_site}"
    return None


def verify_all(
    location_id: int | None = None, *, public_keys: tuple[str, ...] = (), checkpoint_files: tuple[Path, ...] = ()
) -> list[ChainReport]:
    ids = (
        [location_id]
        if location_id is not None
        else list(db.session.scalars(select(Location.id).order_by(Location.id)))
    )
    trust, outside = pinned_trust(public_keys), outside_checkpoints(checkpoint_files)
    return [verify_location(i, trust=trust, outside=outside) for i in ids]


def checkpoint_signature_ok(cp: Checkpoint) -> bool:
    return signature_ok(SignedHead.of(cp))


def signature_ok(head: SignedHead) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(head.public_key)).verify(
            bytes.fromhex(head.signature),
            checkpoint_message(head.location_id, head.seq, head.head_hash, head.signed_at),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_checkpoints() -> list[Checkpoint]:
    """Sign every chain head that has moved since its last checkpoint."""
    made = []
    for chain in db.session.scalars(select(LedgerChain).order_by(LedgerChain.location_id)):
        if chain.head_seq == 0:
            continue
        exists = db.session.scalar(
            select(Checkpoint.id).where(Checkpoint.location_id == chain.location_id, Checkpoint.seq == chain.head_seq)
        )
        if exists is not None:
            continue
        now = utcnow()
        cp = Checkpoint(
            location_id=chain.location_id,
            seq=chain.head_seq,
            head_hash=chain.head_hash,
            signed_at=now,
            public_key=signing.public_key_hex(),
            signature=signing.sign(
                checkpoint_message(chain.location_id, chain.head_seq, chain.head_hash, format_time(now))
            ),
        )
        db.session.add(cp)
        made.append(cp)
    db.session.flush()
    if made:
        heads = [SignedHead.of(cp) for cp in made]
        tx.after_commit(lambda: _publish(heads))  # a copy outside the database, once they are kept
    return made
