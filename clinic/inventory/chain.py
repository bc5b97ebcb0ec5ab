"""Canonical serialisation and hashing of ledger entries.

Standard library only, so the offline verifier can use the very same rules without the app.
hash = SHA-256(0x00 || canonical_json(fields) || prev_hash_hex_ascii)
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64

#: The recorded fields, in the export's field names. ``id`` is a database detail and not hashed.
HASHED_FIELDS = (
    "location_id",
    "seq",
    "kind",
    "container_id",
    "drug_id",
    "delta_ug",
    "balance_after_ug",
    "patient_id",
    "appointment_id",
    "actor_id",
    "witness_id",
    "second_witness_id",
    "corrects_seq",
    "occurred_at",
    "recorded_at",
    "reason",
    "details",
    "prev_hash",
)


def format_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict[str, Any]) -> bytes:
    def norm(v: Any) -> Any:
        if isinstance(v, datetime):
            return format_time(v)
        if isinstance(v, float):  # pragma: no cover - guarded by the schemas
            raise TypeError("floats are not allowed in ledger records")
        return v

    body = {k: norm(fields.get(k)) for k in HASHED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(b"\x00" + canonical(fields) + str(fields["prev_hash"]).encode()).hexdigest()
