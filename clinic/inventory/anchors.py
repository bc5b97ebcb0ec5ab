"""Where a purged chain starts again (SYS-02, DEA-08, SYS-05).

``clinic purge ledger`` (clinic.inventory.purge) removes a location's oldest entries, seq 1..S, past
retention. Before it deletes them it writes a signed anchor: the hash of entry S and what the walk
of clinic.inventory.integrity had learned by then (each container's running balance, status,
storage site and last seq; the initial inventory's seq and time; the form-1 re-anchoring state).
``verify_location`` starts from the newest anchor instead of the genesis: its signature against the
pinned key, entry S+1 continuing its hash, the containers seeded from it. An anchor is as good as
its key: a forged or altered one does not verify and is named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from clinic.core import signing
from clinic.extensions import db
from clinic.inventory.chain import GENESIS, format_time
from clinic.inventory.models import LedgerAnchor

if TYPE_CHECKING:
    from clinic.inventory.integrity import Trust


@dataclass
class Cut:
    """A chain's facts at one seq: where a walk stands (seq 0: the genesis)."""

    seq: int = 0
    head_hash: str = GENESIS
    #: container id -> [balance, status, storage site, seq of its last entry]
    containers: dict[int, list[Any]] = field(default_factory=dict)
    #: the initial inventory's seq and time
    opened: tuple[int, datetime] | None = None
    #: the form-1 re-anchoring state (clinic.inventory.integrity.Form1Anchor)
    shadow: str = GENESIS
    last_form1: int = 0
    anchored: bool = False

    def state(self) -> dict[str, Any]:
        """What an anchor keeps of the cut, as JSON."""
        return {
            "containers": {str(cid): list(row) for cid, row in sorted(self.containers.items())},
            "opened": [self.opened[0], format_time(self.opened[1])] if self.opened else None,
            "form1": {"shadow": self.shadow, "last_form1": self.last_form1, "anchored": self.anchored},
        }

    @classmethod
    def of(cls, anchor: LedgerAnchor) -> Cut:
        state = anchor.state or {}
        opened = state.get("opened")
        form1 = state.get("form1") or {}
        return cls(
            seq=anchor.through_seq,
            head_hash=anchor.head_hash,
            containers={int(cid): list(row) for cid, row in (state.get("containers") or {}).items()},
            opened=(int(opened[0]), datetime.fromisoformat(opened[1].replace("Z", "+00:00"))) if opened else None,
            shadow=str(form1.get("shadow", GENESIS)),
            last_form1=int(form1.get("last_form1", 0)),
            anchored=bool(form1.get("anchored", False)),
        )


def anchor_message(
    location_id: int, through_seq: int, head_hash: str, state: dict[str, Any], cutoff: Any, requested_at: Any
) -> bytes:
    """What an anchor's Ed25519 signature covers: canonical JSON (sorted keys, no spaces), its kind
    named so no other signed body (a checkpoint, a seal, a log purge) can pass for it."""
    body = {
        "kind": "ledger-anchor",
        "location_id": location_id,
        "through_seq": through_seq,
        "head_hash": head_hash,
        "state": state,
        "cutoff": cutoff if isinstance(cutoff, str) else format_time(cutoff),
        "requested_at": requested_at if isinstance(requested_at, str) else format_time(requested_at),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def message_of(anchor: LedgerAnchor) -> bytes:
    return anchor_message(
        anchor.location_id, anchor.through_seq, anchor.head_hash, anchor.state, anchor.cutoff, anchor.requested_at
    )


def sign(anchor: LedgerAnchor) -> None:
    anchor.public_key = signing.public_key_hex()
    anchor.signature = signing.sign(message_of(anchor))


def signature_problem(anchor: LedgerAnchor, trust: Trust) -> str | None:
    where = f"the purge anchor through seq {anchor.through_seq}"
    if not trust:
        return (
            f"no pinned key to check {where} against: set CLINIC_CHECKPOINT_KEY_FINGERPRINTS, keep the signing "
            "key file, or pass --public-key"
        )
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(anchor.public_key)).verify(
            bytes.fromhex(anchor.signature), message_of(anchor)
        )
    except (InvalidSignature, ValueError):
        return f"{where} does not verify: its signature is invalid"
    if not trust.trusts(anchor.public_key):
        return f"{where} is signed by another key, not the pinned one"
    return None


def anchors_of(location_id: int) -> list[LedgerAnchor]:
    """The location's anchors, oldest cut first."""
    return list(
        db.session.scalars(
            select(LedgerAnchor).where(LedgerAnchor.location_id == location_id).order_by(LedgerAnchor.through_seq)
        )
    )


def newest(location_id: int) -> LedgerAnchor | None:
    return db.session.scalar(
        select(LedgerAnchor)
        .where(LedgerAnchor.location_id == location_id)
        .order_by(LedgerAnchor.through_seq.desc())
        .limit(1)
    )
