"""The canonical form of access-log and audit-trail rows, and of the seals over ranges of them.

Standard library only and pure, so an offline verifier (``clinic-verify``) can copy this file and
check an access-log export with the very same rules as ``clinic ledger verify`` (SYS-05, HIP-04).

- A row's digest: SHA-256(0x00 || canonical_json({"stream": ..., every sealed field})).
  The row's ``id`` is hashed, so a row moved, inserted or dropped inside a sealed range changes the root.
- A range's root: the Merkle tree hash of RFC 6962 §2.1 over the row digests in ``id`` order
  (interior node = SHA-256(0x01 || left || right), split at the largest power of two below n).
  The leaves are 0x00-prefixed digests, so a leaf can never pass for an interior node.
- A seal: its body (stream, seq, first and last id of its range, row count, root, the previous
  seal's hash, its newest row's time, when it was sealed) in canonical JSON is what Ed25519 signs;
  its hash, which the next seal names as ``prev_hash``, is SHA-256(0x02 || body || signature hex).
  Removing or re-signing a seal breaks the next seal's link.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

#: stream name -> the fields of a row that a seal covers, in the export's field names
STREAM_FIELDS: dict[str, tuple[str, ...]] = {
    "access": (
        "id",
        "occurred_at",
        "user_id",
        "action",
        "object",
        "outcome",
        "status_code",
        "client_addr",
        "request_id",
    ),
    "audit": ("id", "occurred_at", "actor_id", "tag", "subject_type", "subject_id", "data", "request_id"),
}

SEAL_FIELDS = (
    "stream",
    "seq",
    "first_id",
    "last_id",
    "row_count",
    "root",
    "prev_hash",
    "last_occurred_at",
    "sealed_at",
)


def format_time(dt: datetime | str) -> str:
    """UTC with microseconds and a Z: one spelling for a time, whatever the backend returned."""
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    dt = dt.astimezone(UTC)
    # spelled out, not strftime: "%Y" of year 1 is "1" on some platforms and "0001" on others
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond:06d}Z"
    )


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in sealed rows")
    return value


def canonical_row(stream: str, row: dict[str, Any]) -> bytes:
    body = {name: _norm(row.get(name)) for name in STREAM_FIELDS[stream]}
    body["occurred_at"] = format_time(row["occurred_at"])
    body["stream"] = stream
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_digest(stream: str, row: dict[str, Any]) -> bytes:
    """The 32-byte leaf of one row."""
    return hashlib.sha256(b"\x00" + canonical_row(stream, row)).digest()


def range_root(digests: list[bytes]) -> str:
    """The RFC 6962 Merkle tree hash over the leaves, hex; an empty range has the hash of nothing."""
    if not digests:
        return hashlib.sha256(b"").hexdigest()
    level = list(digests)
    # Bottom-up with the RFC's shape: pairing left to right and carrying an odd last node up
    # unchanged gives the same tree as splitting at the largest power of two below n.
    while len(level) > 1:
        paired = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0].hex()


def seal_message(seal: dict[str, Any]) -> bytes:
    """The bytes Ed25519 signs for a seal."""
    body = {name: seal[name] for name in SEAL_FIELDS}
    body["sealed_at"] = format_time(seal["sealed_at"])
    body["last_occurred_at"] = format_time(seal["last_occurred_at"])
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def seal_hash(seal: dict[str, Any]) -> str:
    """What the next seal links to: the body and its signature together."""
    return hashlib.sha256(b"\x02" + seal_message(seal) + str(seal["signature"]).encode()).hexdigest()


def purge_message(purge: dict[str, Any]) -> bytes:
    """The bytes Ed25519 signs for a purge: which seals' rows were removed, by what cutoff."""
    body = {
        "stream": purge["stream"],
        "through_seal": purge["through_seal"],
        "through_id": purge["through_id"],
        "cutoff": format_time(purge["cutoff"]),
        "requested_at": format_time(purge["requested_at"]),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
