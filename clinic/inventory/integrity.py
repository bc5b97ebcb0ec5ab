"""Re-walking the hash chains, and signed checkpoints of their heads (SYS-05, F5-F7)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from clinic.core import signing
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.inventory.chain import GENESIS, HASHED_FIELDS, entry_hash, format_time
from clinic.inventory.models import Checkpoint, LedgerChain, LedgerEntry
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
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


def verify_location(location_id: int, batch: int = 2000) -> ChainReport:
    prev, expected_seq, n = GENESIS, 1, 0
    balances: dict[int, int] = {}
    while True:
        rows = db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.location_id == location_id, LedgerEntry.seq >= expected_seq)
            .order_by(LedgerEntry.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for e in rows:
            if e.seq != expected_seq:
                return ChainReport(location_id, n, prev, f"seq {expected_seq} is missing", expected_seq)
            if e.prev_hash != prev:
                return ChainReport(location_id, n, prev, "prev_hash does not continue the chain", e.seq)
            if entry_hash(entry_fields(e)) != e.hash:
                return ChainReport(location_id, n, prev, "the entry's content does not match its hash", e.seq)
            if e.container_id is not None:
                balance = balances.get(e.container_id, 0) + e.delta_ug
                if balance < 0 or balance != e.balance_after_ug:
                    return ChainReport(location_id, n, prev, "running balance is wrong", e.seq)
                balances[e.container_id] = balance
            prev, expected_seq, n = e.hash, expected_seq + 1, n + 1
            db.session.expunge(e)  # long chains: keep memory flat
    chain = db.session.get(LedgerChain, location_id)
    if chain is not None and (chain.head_seq != n or chain.head_hash != prev):
        return ChainReport(
            location_id,
            n,
            prev,
            f"the chain head says seq {chain.head_seq}; entries end at {n}",
            n + 1 if chain.head_seq > n else chain.head_seq,
        )
    for cp in db.session.scalars(select(Checkpoint).where(Checkpoint.location_id == location_id)):
        if not checkpoint_signature_ok(cp):
            return ChainReport(location_id, n, prev, "a checkpoint's signature is invalid", cp.seq)
        if cp.seq > n:
            return ChainReport(location_id, n, prev, "entries signed in a checkpoint are missing", n + 1)
        at = db.session.scalar(
            select(LedgerEntry.hash).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == cp.seq)
        )
        if at != cp.head_hash:
            return ChainReport(location_id, n, prev, "a checkpoint does not match the chain", cp.seq)
    return ChainReport(location_id, n, prev)


def verify_all(location_id: int | None = None) -> list[ChainReport]:
    ids = (
        [location_id]
        if location_id is not None
        else list(db.session.scalars(select(Location.id).order_by(Location.id)))
    )
    return [verify_location(i) for i in ids]


def checkpoint_message(location_id: int, seq: int, head_hash: str, signed_at: str) -> bytes:
    return json.dumps(
        {"location_id": location_id, "seq": seq, "head_hash": head_hash, "signed_at": signed_at},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def checkpoint_signature_ok(cp: Checkpoint) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp.public_key)).verify(
            bytes.fromhex(cp.signature),
            checkpoint_message(cp.location_id, cp.seq, cp.head_hash, format_time(cp.signed_at)),
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
    return made
