#!/usr/bin/env python3
"""clinic-verify: check an auditor export offline, and the ledger's canonical form.

This one file is both halves of the proof, so the server and the auditor can never disagree on it:

1. The canonical form of a ledger entry and its hash (standard library only). The server imports
   it (``clinic.inventory.chain``) to hash every entry it appends and to re-walk its chains.
2. The verifier of an export bundle (the file, its ``.manifest.json`` and, for a PDF, the rows
   beside it). It needs the standard library and ``cryptography`` (for Ed25519) and nothing else:
   copy this file anywhere and run ``python3 verifier.py EXPORT --public-key KEY``.

Form 1 (entries written before migration 0013): hash = SHA-256(0x00 || canonical(fields) || prev_hash)
with every field in the clear. Form 2: each PHI field (``patient_id`` and every ``details`` key that
starts with ``patient_``) enters the canonical body as a salted commitment,
SHA-256(salt || canonical_json(value)), and the body carries ``"v": 2``. An export with PHI carries
the values and salts; one without carries only the commitments; both verify. Form-1 entries are
bound to their committed form by the chain's re-anchoring entry: a chained digest ("shadow") over
every form-1 entry's hash and committed-form hash, recorded in a form-2 entry (SYS-05, HIP-15).
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

#: the form new entries are written in
FORM = 2


def format_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return format_time(v)
    if isinstance(v, float):  # pragma: no cover - guarded by the schemas
        raise TypeError("floats are not allowed in ledger records")
    return v


def canonical(fields: dict[str, Any], form: int | None = None) -> bytes:
    """Sorted-key compact UTF-8 JSON of the hashed fields; ``form`` None is form 1 in the clear
    (the bytes entries were hashed with before 0013), else the committed body marked ``"v"``."""
    body = {k: _norm(fields.get(k)) for k in HASHED_FIELDS}
    if form is not None:
        body["v"] = form
    return _json(body)


def phi_paths(fields: dict[str, Any]) -> list[str]:
    """The PHI slots an entry fills: ``patient_id`` and ``details.patient_*`` that are not null."""
    paths = ["patient_id"] if fields.get("patient_id") is not None else []
    details = fields.get("details") or {}
    paths += [f"details.{k}" for k in sorted(details) if k.startswith("patient_") and details[k] is not None]
    return paths


def get_path(fields: dict[str, Any], path: str) -> Any:
    if path.startswith("details."):
        return (fields.get("details") or {}).get(path[8:])
    return fields.get(path)


def _set_path(fields: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("details."):
        fields["details"] = {**(fields.get("details") or {}), path[8:]: value}
    else:
        fields[path] = value


def commitment(salt_hex: str, value: Any) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + _json(value)).hexdigest()


def committed(fields: dict[str, Any], salts: dict[str, str]) -> dict[str, Any]:
    """The entry with each PHI slot replaced by its commitment: what the hash covers in form 2."""
    record = {k: _norm(fields.get(k)) for k in HASHED_FIELDS}
    for path in phi_paths(record):
        if path not in salts:
            raise KeyError(f"no salt for {path}")
        _set_path(record, path, commitment(salts[path], get_path(record, path)))
    return record


def _hash(body: bytes, prev_hash: Any) -> str:
    return hashlib.sha256(b"\x00" + body + str(prev_hash).encode()).hexdigest()


def record_hash(record: dict[str, Any], form: int = FORM) -> str:
    """The hash of a committed record (PHI slots already commitments). For form 2 this is the
    entry's own hash; for a form-1 entry it is what the re-anchoring shadow covers."""
    return _hash(canonical(record, form), record.get("prev_hash"))


def entry_hash(fields: dict[str, Any]) -> str:
    """An entry's hash from its stored fields. ``phi_salts`` None (or absent) is form 1."""
    salts = fields.get("phi_salts")
    if salts is None:
        return _hash(canonical(fields), fields["prev_hash"])
    return record_hash(committed(fields, salts))


def shadow_step(shadow: str, entry_hash_hex: str, committed_hash_hex: str) -> str:
    """One form-1 entry into the re-anchoring digest: binds its hash to its committed form."""
    return hashlib.sha256(b"\x02" + entry_hash_hex.encode() + committed_hash_hex.encode() + shadow.encode()).hexdigest()
