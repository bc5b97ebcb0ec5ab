#!/usr/bin/env python3
"""clinic-verify: check an auditor export offline, and the ledger's canonical form.

This one file is both halves of the proof, so the server and the auditor can never disagree on it:

1. The canonical form of a ledger entry and its hash (standard library only). The server imports
   it (``clinic.inventory.chain``) to hash every entry it appends and to re-walk its chains.
2. The verifier of an export bundle (the file, its ``.manifest.json`` and, for a PDF, the rows
   beside it). It needs the standard library and ``cryptography`` (for Ed25519) and nothing else:
   copy this file anywhere and run ``python3 verifier.py EXPORT --public-key KEY``. A large CSV
   export is walked by one worker process per CPU (``multiprocessing``; see section 3b).

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
from collections.abc import Callable
from datetime import UTC, datetime
from json.encoder import encode_basestring
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
    dt = dt.astimezone(UTC)
    if dt.year >= 1000:  # the same text, faster; strftime's %Y does not pad years before 1000
        return dt.isoformat(timespec="microseconds")[:-6] + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: one encoder for every canonical body (json.dumps with options builds a new one per call)
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _json(value: Any) -> bytes:
    return _ENCODE(value).encode()


_encode_str = encode_basestring  # what the encoder above writes for a str (ensure_ascii off)


def _json_value(value: Any) -> str:
    """One value as the canonical encoder writes it: the common types spelled directly."""
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return _ENCODE(value)


def _norm(v: Any) -> Any:
    if isinstance(v, datetime):
        return format_time(v)
    if isinstance(v, float):  # pragma: no cover - guarded by the schemas
        raise TypeError("floats are not allowed in ledger records")
    return v


def canonical(fields: dict[str, Any], form: int | None = None) -> bytes:
    """Sorted-key compact UTF-8 JSON of the hashed fields; ``form`` None is form 1 in the clear
    (the bytes entries were hashed with before 0013), else the committed body marked ``"v"``."""
    body = _hashed(fields)
    if form is not None:
        body["v"] = form
    return _json(body)


def _hashed(fields: dict[str, Any]) -> dict[str, Any]:
    """The hashed fields, times as text; values already plain (a parsed export) pass as they are."""
    body = {k: fields.get(k) for k in HASHED_FIELDS}
    for k, v in body.items():
        if v is not None and type(v) is not str and type(v) is not int and type(v) is not dict:
            body[k] = _norm(v)
    return body


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
    return hashlib.sha256(bytes.fromhex(salt_hex) + _json_value(value).encode()).hexdigest()


def committed(fields: dict[str, Any], salts: dict[str, str]) -> dict[str, Any]:
    """The entry with each PHI slot replaced by its commitment: what the hash covers in form 2.
    The caller's ``details`` is never changed: the record gets its own copy when it has PHI."""
    record = _hashed(fields)
    if record["patient_id"] is not None:
        if "patient_id" not in salts:
            raise KeyError("no salt for patient_id")
        record["patient_id"] = commitment(salts["patient_id"], record["patient_id"])
    details = record["details"]
    if details:
        copied = None
        for key in sorted(details):
            value = details[key]
            if key.startswith("patient_") and value is not None:
                path = "details." + key
                if path not in salts:
                    raise KeyError(f"no salt for {path}")
                if copied is None:
                    copied = record["details"] = dict(details)
                copied[key] = commitment(salts[path], value)
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


def checkpoint_message(location_id: Any, seq: Any, head_hash: Any, signed_at: Any) -> bytes:
    """What a checkpoint's Ed25519 signature covers (SYS-05). Values pass through unconverted: a
    manifest's ``"1"`` for ``1`` must not verify."""
    return _json({"location_id": location_id, "seq": seq, "head_hash": head_hash, "signed_at": signed_at})


# ---------------------------------------------------------------------------------------------------
# 1b. The sealed logs (clinic.audit.sealform re-exports these): the access log and the audit trail are
# not chained row by row; a seal is a signed Merkle root over a range of their rows (SYS-05, HIP-04).
# - A row's leaf: SHA-256(0x00 || canonical_json({"stream": ..., every sealed field})).
# - A range's root: the RFC 6962 §2.1 Merkle tree hash over the leaves in ``id`` order
#   (interior node = SHA-256(0x01 || left || right)).
# - A seal's signed body: its SEAL_FIELDS in canonical JSON (ASCII); its hash, which the next seal
#   names as ``prev_hash``, is SHA-256(0x02 || body || signature hex).
# ---------------------------------------------------------------------------------------------------

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


def seal_time(dt: datetime | str) -> str:
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


def _seal_norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return seal_time(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in sealed rows")
    return value


def canonical_row(stream: str, row: dict[str, Any]) -> bytes:
    body = {name: _seal_norm(row.get(name)) for name in STREAM_FIELDS[stream]}
    body["occurred_at"] = seal_time(row["occurred_at"])
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
    body["sealed_at"] = seal_time(seal["sealed_at"])
    body["last_occurred_at"] = seal_time(seal["last_occurred_at"])
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
        "cutoff": seal_time(purge["cutoff"]),
        "requested_at": seal_time(purge["requested_at"]),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------------
# 2. What an export holds: its kinds, the rows each takes, the columns each row shows.
# The exporter renders rows with these very functions and the verifier re-derives every cell with
# them, so a cell edited in the file is named even where the file's digest would catch it anyway.
# ---------------------------------------------------------------------------------------------------

MANIFEST_FORMAT = "clinic-export/1"

#: profiles and the PHI paths each carries (HIP-15 minimum necessary; DEA-26 names the patient's
#: name and address on a dispensing record, nothing more; no profile has price or charge fields,
#: DEA-12)
PROFILES: dict[str, tuple[str, ...] | None] = {
    "full": None,  # every PHI field, for the clinic's own compliance officer
    "dea-inspection": ("details.patient_name", "details.patient_address"),
    "no-phi": (),
}

_WHO = [("recorded_by", "user:actor_id")]
_DRUG = [
    ("drug_name", "drug:name"),
    ("ndc", "drug:ndc"),
    ("schedule", "drug:schedule"),
    ("form", "drug:form"),
    ("strength", "drug:strength"),
    ("container_size", "drug:container_size"),
]
_HEAD = [("seq", "seq"), ("occurred_at", "occurred_at"), ("recorded_at", "recorded_at")]

#: kind -> (ledger entry kinds it takes, or None for a table kind; its columns)
KINDS: dict[str, tuple[tuple[str, ...] | None, list[tuple[str, str]]]] = {
    "dispensing-log": (
        ("administration",),
        [
            *_HEAD,
            *_DRUG,
            ("lot_number", "d:lot_number"),
            ("container_id", "container_id"),
            ("quantity_mg", "-mg:delta_ug"),
            ("balance_after_mg", "mg:balance_after_ug"),
            ("patient_name", "phi:details.patient_name"),
            ("patient_address", "phi:details.patient_address"),
            ("patient_id", "phi:patient_id"),
            ("administered_by", "user:actor_id"),
            ("late_entry_reason", "d:late_entry_reason"),
        ],
    ),
    "receiving-log": (
        ("receipt",),
        [
            *_HEAD,
            *_DRUG,
            ("lot_number", "d:lot_number"),
            ("expires_on", "d:expires_on"),
            ("container_id", "container_id"),
            ("quantity_mg", "mg:delta_ug"),
            ("containers_in_receipt", "d:container_count"),
            ("supplier_name", "d:supplier_name"),
            ("supplier_address", "d:supplier_address"),
            ("supplier_dea_registration", "d:supplier_dea_registration"),
            ("invoice_number", "d:invoice_number"),
            ("received_by", "user:actor_id"),
        ],
    ),
    "waste-log": (
        ("waste",),
        [
            *_HEAD,
            *_DRUG,
            ("container_id", "container_id"),
            ("quantity_mg", "-mg:delta_ug"),
            ("reason", "reason"),
            ("administration_seq", "d:administration_seq"),
            ("no_administration_reason", "d:no_administration_reason"),
            ("patient_id", "phi:patient_id"),
            ("wasted_by", "user:actor_id"),
            ("witness", "user:witness_id"),
        ],
    ),
    "loss-log": (
        ("loss",),
        [
            *_HEAD,
            *_DRUG,
            ("container_id", "container_id"),
            ("quantity_mg", "-mg:delta_ug"),
            ("loss_kind", "d:loss_kind"),
            ("description", "reason"),
            ("reported_by", "user:actor_id"),
            # DEA Form 106 (DEA-31/32): the report's own record, signed by the manifest
            ("form_106_discovered_at", "x:form_106_discovered_at"),
            ("form_106_notice_due_at", "x:form_106_notice_due_at"),
            ("form_106_notified_at", "x:form_106_notified_at"),
            ("form_106_filing_due_on", "x:form_106_filing_due_on"),
            ("form_106_filed_at", "x:form_106_filed_at"),
            ("form_106", "x:form_106"),
        ],
    ),
    "disposal-log": (
        ("destruction", "return_to_distributor"),
        [
            *_HEAD,
            ("kind", "kind"),
            *_DRUG,
            ("lot_number", "d:lot_number"),
            ("container_id", "container_id"),
            ("quantity_mg", "-mg:delta_ug"),
            ("method", "d:method"),
            ("reverse_distributor", "d:reverse_distributor"),
            ("disposed_by", "user:actor_id"),
            ("witness", "user:witness_id"),
            ("second_witness", "user:second_witness_id"),
            ("form_41", "d:form_41"),
        ],
    ),
    "inventory": (
        ("initial_inventory", "count"),
        [
            *_HEAD,
            ("count_kind", "d:count_kind"),
            ("business_hours", "d:business_hours"),
            ("registrant", "d:registrant"),
            ("taken_by", "d:taken_by"),
            ("witnessed_by", "d:witnessed_by"),
            ("lines", "d:lines"),
        ],
    ),
    "ledger": (
        (),  # every kind
        [
            *_HEAD,
            ("kind", "kind"),
            ("container_id", "container_id"),
            ("drug_id", "drug_id"),
            ("drug_name", "drug:name"),
            ("delta_mg", "mg:delta_ug"),
            ("balance_after_mg", "mg:balance_after_ug"),
            ("patient_id", "phi:patient_id"),
            ("appointment_id", "appointment_id"),
            ("actor", "user:actor_id"),
            ("witness", "user:witness_id"),
            ("second_witness", "user:second_witness_id"),
            ("corrects_seq", "corrects_seq"),
            ("reason", "reason"),
            ("details", "d:*"),
            ("prev_hash", "prev_hash"),
        ],
    ),
    "access-log": (
        None,
        [
            ("id", "t:id"),
            ("occurred_at", "t:occurred_at"),
            ("user_id", "t:user_id"),
            ("user", "t:user"),
            ("action", "t:action"),
            ("object", "t:object"),
            ("outcome", "t:outcome"),
            ("status_code", "t:status_code"),
            ("client_addr", "t:client_addr"),
            ("request_id", "t:request_id"),
        ],
    ),
    "audit-trail": (
        None,
        [
            ("id", "t:id"),
            ("occurred_at", "t:occurred_at"),
            ("actor_id", "t:actor_id"),
            ("actor", "t:actor"),
            ("tag", "t:tag"),
            ("subject_type", "t:subject_type"),
            ("subject_id", "t:subject_id"),
            ("data", "t:data"),
            ("request_id", "t:request_id"),
        ],
    ),
}

#: the columns every ledger row carries after its kind's own: what the proof needs
PROOF_COLUMNS = ("hash", "record", "phi")


def headers(kind: str) -> list[str]:
    table, cols = KINDS[kind]
    return [h for h, _ in cols] + ([] if table is None else list(PROOF_COLUMNS))


def format_mg(ug: int) -> str:
    sign = "-" if ug < 0 else ""
    whole, frac = divmod(abs(ug), 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def text(value: Any) -> str:
    """One cell: plain text, integers as digits, objects as compact JSON, nothing as empty."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    return _json(value).decode()


def cell(spec: str, record: dict[str, Any], phi: dict[str, Any], names: dict[str, Any]) -> str | None:
    """A column's value from the committed record, the PHI carried and the manifest's names; None
    for a column the chain does not cover (``x:``, signed by the manifest only)."""
    how, _, what = spec.rpartition(":")
    return _column(how, what)(record, phi, names)


_Cell = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], "str | None"]


def _column(how: str, what: str) -> _Cell:
    """The function that renders one column: a spec is parsed once per kind, not once per cell."""
    if how == "x" or how == "t":
        return lambda record, phi, names: None
    if how == "":
        return lambda record, phi, names: text(record.get(what))
    if how in ("mg", "-mg"):
        sign = -1 if how == "-mg" else 1

        def mg(record: dict[str, Any], phi: dict[str, Any], names: dict[str, Any]) -> str:
            value = record.get(what)
            return "" if value is None else format_mg(sign * value)

        return mg
    if how == "d":
        if what == "*":
            return lambda record, phi, names: text(record.get("details") or {})
        return lambda record, phi, names: text((record.get("details") or {}).get(what))
    if how == "user":

        def user(record: dict[str, Any], phi: dict[str, Any], names: dict[str, Any]) -> str:
            uid = record.get(what)
            return "" if uid is None else text(names.get("users", {}).get(str(uid)))

        return user
    if how == "drug":

        def drug(record: dict[str, Any], phi: dict[str, Any], names: dict[str, Any]) -> str:
            did = record.get("drug_id")
            return "" if did is None else text((names.get("drugs", {}).get(str(did)) or {}).get(what))

        return drug
    if how == "phi":
        return lambda record, phi, names: text(phi[what]["value"]) if what in phi else ""
    raise ValueError(f"unknown column spec {how}:{what}")


#: kind -> its columns as (header, renderer)
_COLUMNS: dict[str, list[tuple[str, _Cell]]] = {
    kind: [(h, _column(*spec.rpartition(":")[::2])) for h, spec in cols] for kind, (_, cols) in KINDS.items()
}


def renderers(kind: str) -> list[tuple[str, _Cell]]:
    """A kind's columns as (header, renderer), in header order."""
    return _COLUMNS[kind]


def included(kind: str, filters: dict[str, Any], record: dict[str, Any], names: dict[str, Any]) -> bool:
    """Whether a ledger entry of the export's segment belongs in the export (else it is left out)."""
    takes = KINDS[kind][0] or ()
    if takes and record.get("kind") not in takes:
        return False
    count_kind = (record.get("details") or {}).get("count_kind")
    if kind == "inventory" and record.get("kind") == "count" and count_kind not in ("initial", "biennial"):
        return False  # DEA-17: inventories; shift counts are operations
    at = record.get("occurred_at") or ""
    if filters.get("since") and at < filters["since"]:
        return False
    if filters.get("until") and at >= filters["until"]:
        return False
    did = record.get("drug_id")
    if filters.get("drug_id") is not None and did != filters["drug_id"]:
        return kind == "inventory" and did is None
    if filters.get("schedule"):
        drug = names.get("drugs", {}).get(str(did)) if did is not None else None
        if drug is None:
            return kind == "inventory"
        if drug.get("schedule") != filters["schedule"]:
            return False
    return True


def export_row(
    kind: str, record: dict[str, Any], entry_hash_hex: str, phi: dict[str, Any], names: dict[str, Any]
) -> dict[str, Any]:
    """A ledger row as written: its kind's columns, then its hash, committed record and PHI."""
    row: dict[str, Any] = {h: render(record, phi, names) for h, render in _COLUMNS[kind]}
    row.update(hash=entry_hash_hex, record=record, phi=phi)
    return row


def time_text(value: str) -> str:
    """A filter's bound as the records write times (UTC, microseconds), for string comparison."""
    return format_time(datetime.fromisoformat(value.replace("Z", "+00:00")))


# ---------------------------------------------------------------------------------------------------
# 3. The verifier: every mutation class of F5 is named.
# ---------------------------------------------------------------------------------------------------


class Altered(Exception):
    """The first problem found: the export is altered, incomplete or not signed by the pinned key."""


def _canonical_manifest(manifest: dict[str, Any]) -> bytes:
    return _json({k: v for k, v in manifest.items() if k != "signature"})


def sign_manifest(manifest: dict[str, Any], sign: Any, public_key_hex: str) -> dict[str, Any]:
    manifest = {**manifest, "public_key": public_key_hex}
    manifest["signature"] = sign(_canonical_manifest(manifest))
    return manifest


def fingerprint(public_key_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def _signature_ok(public_key_hex: str, signature_hex: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_public_key(value: str) -> str:
    """64 hex digits, a file of them, or a PEM file (public or private Ed25519 key)."""
    import os

    if os.path.isfile(value):
        with open(value, "rb") as fh:
            data = fh.read()
        if not data.lstrip().startswith(b"-----"):
            value = data.decode().strip()
        else:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            try:
                key: Any = serialization.load_pem_public_key(data)
            except ValueError:
                key = serialization.load_pem_private_key(data, password=None).public_key()
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    raw = bytes.fromhex(value.strip())
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (64 hex digits)")
    return raw.hex()


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_rows(path: str, file_format: str):
    """The rows of an export file as dicts (record and phi parsed), streamed."""
    import csv

    if file_format == "csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            head = next(reader, None)
            if head is None:
                raise Altered("the export file is empty: its header row is missing")
            yield {"__header__": head}
            width, parsed = len(head), [k for k in ("record", "phi") if k in head]
            at_record = head.index("record") if "record" in head else None
            decode = json.JSONDecoder().decode
            for n, values in enumerate(reader, start=2):
                if len(values) != width:
                    raise Altered(f"line {n} of the export has {len(values)} cells, the header {width}")
                row = dict(zip(head, values, strict=False))  # lengths compared just above
                for key in parsed:
                    row[key] = decode(row[key]) if row[key] else {}
                if at_record is not None:
                    row[_RECORD_TEXT] = values[at_record]
                yield row
    else:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


#: a CSV row's record cell as it stood in the file (its canonical bytes when unaltered)
_RECORD_TEXT = "\x00record text"


class _Segment:
    """Walks the chain segment in seq order: every entry once, each linked, hashed and anchored."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        seg = manifest["segment"]
        self.kind, self.filters, self.names = manifest["kind"], manifest["filters"], manifest["names"]
        self.allowed = PROFILES.get(manifest["profile"], ())
        self.location_id, self.first = seg["location_id"], seg["first_seq"]
        self.next_seq, self.prev = seg["first_seq"], seg["first_prev_hash"]
        self.last_seq, self.last_hash = seg["last_seq"], seg["last_hash"]
        self.shadow, self.form1_open = seg.get("shadow_before") or GENESIS, False
        self.recorded = ""
        self.since = self.filters.get("since") or ""
        drug = [spec.startswith("drug:") for _, spec in KINDS[self.kind][1]]
        self.columns = [c for c, is_drug in zip(_COLUMNS[self.kind], drug, strict=True) if not is_drug]
        self.drug_columns = [c for c, is_drug in zip(_COLUMNS[self.kind], drug, strict=True) if is_drug]
        self.drug_cells: dict[Any, list[tuple[str, str | None]]] = {}

    def take(self, row: dict[str, Any], in_export: bool) -> None:
        record, h, phi = row.get("record") or {}, row.get("hash"), row.get("phi") or {}
        seq = record.get("seq")
        where = f"seq {seq}"
        if seq != self.next_seq:
            if isinstance(seq, int) and seq < self.next_seq:
                raise Altered(f"{where} appears twice, or out of order (expected seq {self.next_seq})")
            raise Altered(f"seq {self.next_seq} is missing from the export and the left-out rows")
        if record.get("location_id") != self.location_id:
            raise Altered(f"{where} is another location's entry")
        if record.get("prev_hash") != self.prev:
            raise Altered(f"{where}: prev_hash does not continue the chain")
        if seq == self.first and seq > 1 and not (record.get("recorded_at") or "") < self.since:
            raise Altered(f"{where}: the segment starts inside the period, so earlier entries may be missing")
        if (record.get("recorded_at") or "") < self.recorded:
            raise Altered(f"{where}: recorded before the entry it follows")
        self.recorded = record.get("recorded_at") or ""
        for path, pair in phi.items():
            if not isinstance(pair, dict) or get_path(record, path) != commitment(
                pair.get("salt", ""), pair.get("value")
            ):
                raise Altered(f"{where}: the PHI in {path} does not match its commitment")
            if self.allowed is not None and path not in self.allowed:
                raise Altered(f"{where}: carries {path}, which the {self.kind} profile leaves out")
        form = record.get("v")
        raw = row.get(_RECORD_TEXT)
        if form == 2:
            # The cell as written is the canonical body whenever its hash is the entry's: SHA-256 binds
            # those very bytes, so the record parsed from them is the one the chain holds. Otherwise
            # re-encode it (a JSON Lines row, or an altered cell) and compare as before.
            if (raw is None or _hash(raw.encode(), record.get("prev_hash")) != h) and record_hash(record, 2) != h:
                raise Altered(f"{where}: the entry's content does not match its hash")
            if self.form1_open:
                anchor = (record.get("details") or {}).get("reanchor") or {}
                if anchor.get("shadow") != self.shadow or anchor.get("through_seq") != seq - 1:
                    raise Altered(f"{where}: the re-anchoring entry does not match the form-1 entries before it")
                self.form1_open = False
        elif form == 1:
            paths = phi_paths(record)
            if all(p in phi for p in paths):  # every field in the clear: the entry's own hash proves it
                clear = dict(record)
                for p in paths:
                    _set_path(clear, p, phi[p]["value"])
                if _hash(canonical(clear), record.get("prev_hash")) != h:
                    raise Altered(f"{where}: the entry's content does not match its hash")
            self.shadow = shadow_step(self.shadow, str(h), record_hash(record, 1))
            self.form1_open = True
        else:
            raise Altered(f"{where}: unknown canonical form {form!r}")
        if included(self.kind, self.filters, record, self.names) != in_export:
            raise Altered(
                f"{where} belongs in the export but was left out"
                if not in_export
                else f"{where} is in the export but the export's filters leave it out"
            )
        if in_export:
            for header, render in self.columns:
                want = render(record, phi, self.names)
                if want is not None and row.get(header) != want:
                    raise Altered(f"{where}: {header} does not match the entry's record")
            did = record.get("drug_id")
            drug_cells = self.drug_cells.get(did)
            if drug_cells is None:  # the drug's columns depend on its id alone: rendered once per drug
                drug_cells = self.drug_cells[did] = [(c, r(record, phi, self.names)) for c, r in self.drug_columns]
            for header, want in drug_cells:
                if row.get(header) != want:
                    raise Altered(f"{where}: {header} does not match the entry's record")
        self.prev, self.next_seq = h, self.next_seq + 1

    def take_item(self, item: tuple[Any, ...]) -> None:
        """A run of rows, or one row, the parallel walk has checked on its own (see :class:`_RowCheck`):
        what :meth:`take` checks of their place in the chain. Raises :class:`_Unproven` on a problem."""
        if item[0] == "run":
            _, seq, prev, recorded, last_seq, last_hash, last_recorded = item
            if seq != self.next_seq or prev != self.prev or recorded < self.recorded or self.form1_open:
                raise _Unproven
            self.recorded, self.prev, self.next_seq = last_recorded, last_hash, last_seq + 1
            return
        _, seq, prev, h, recorded, form, c1, anchor = item
        if seq != self.next_seq or prev != self.prev or recorded < self.recorded:
            raise _Unproven
        self.recorded = recorded
        if form == 2:
            if self.form1_open:
                if anchor.get("shadow") != self.shadow or anchor.get("through_seq") != seq - 1:
                    raise _Unproven
                self.form1_open = False
        else:
            self.shadow = shadow_step(self.shadow, str(h), c1)
            self.form1_open = True
        self.prev, self.next_seq = h, self.next_seq + 1

    def finish(self) -> None:
        if self.next_seq != self.last_seq + 1:
            raise Altered(f"the export ends at seq {self.next_seq - 1}; the signed segment runs to seq {self.last_seq}")
        if self.prev != self.last_hash:
            raise Altered("the chain does not end at the signed checkpoint's hash (recomputed or cut)")
        if self.form1_open:
            raise Altered("form-1 entries without PHI are not re-anchored in the segment")


# ---------------------------------------------------------------------------------------------------
# 3b. The parallel walk of a large CSV ledger export. Each row's own checks (its PHI against its
# commitments, its hash, the filters, every cell against the record) need nothing but the row: worker
# processes run them on byte ranges of the file cut at record boundaries, and check the links inside
# each run of consecutive rows. This process then walks the runs, the few rows that open or close a
# form-1 stretch, and the left-out rows, in seq order, as :class:`_Segment` does row by row. Anything
# found wrong, or anything unusual, sends the whole walk back to the one-process path, which names
# the first problem exactly as it always has: this path only ever answers "intact".
# ---------------------------------------------------------------------------------------------------

#: below this size the file is walked in one process (starting workers costs more than it saves)
PARALLEL_MIN_BYTES = 8 << 20
#: the byte ranges handed to the workers
CHUNK_BYTES = 4 << 20


class _Unproven(Exception):
    """The parallel walk cannot answer "intact": walk again in one process to name the problem."""


class _RowCheck:
    """The checks of :meth:`_Segment.take` that depend on one CSV row alone, on its cells as a list."""

    def __init__(self, manifest: dict[str, Any], head: list[str]) -> None:
        seg = manifest["segment"]
        self.kind, self.filters, self.names = manifest["kind"], manifest["filters"], manifest["names"]
        self.allowed = PROFILES.get(manifest["profile"], ())
        self.location_id, self.first = seg["location_id"], seg["first_seq"]
        self.since = self.filters.get("since") or ""
        self.width = len(head)
        self.at_hash, self.at_record, self.at_phi = head.index("hash"), head.index("record"), head.index("phi")
        specs = dict(KINDS[self.kind][1])
        at = {h: i for i, h in enumerate(head)}
        self.cells_match = _cells_check(self.kind, at, self.names)
        self.drug_columns = [(at[h], r) for h, r in _COLUMNS[self.kind] if specs[h].startswith("drug:")]
        self.drug_cells: dict[Any, list[tuple[int, str | None]]] = {}

    def rows(self, lines: Any) -> tuple[int, list[tuple[Any, ...]]]:
        """The rows' count and their chain items in order: ("run", first seq, its prev_hash, its
        recorded_at, last seq, its hash, its recorded_at) for consecutive plain form-2 rows, linked;
        ("one", seq, prev_hash, hash, recorded_at, form, committed-form hash, re-anchor) for the rest."""
        import csv

        decode = json.JSONDecoder().decode
        width, at_hash, at_record, at_phi = self.width, self.at_hash, self.at_record, self.at_phi
        loc, first, since, allowed = self.location_id, self.first, self.since, self.allowed
        kind, filters, names = self.kind, self.filters, self.names
        cells_match, drug_columns, drug_cells = self.cells_match, self.drug_columns, self.drug_cells
        items: list[tuple[Any, ...]] = []
        run: list[Any] | None = None
        count = 0
        for values in csv.reader(lines):
            if len(values) != width:
                raise _Unproven
            raw = values[at_record]
            record = decode(raw) if raw else {}
            phi = decode(values[at_phi]) if values[at_phi] else {}
            h = values[at_hash]
            seq = record["seq"]
            prev = record["prev_hash"]
            recorded = record.get("recorded_at") or ""
            if type(seq) is not int or type(recorded) is not str or record.get("location_id") != loc:
                raise _Unproven
            if seq == first and seq > 1 and not recorded < since:
                raise _Unproven
            details = record.get("details") or {}
            for path, pair in phi.items():
                if (
                    type(pair) is not dict
                    or (details.get(path[8:]) if path.startswith("details.") else record.get(path))
                    != commitment(pair.get("salt", ""), pair.get("value"))
                    or (allowed is not None and path not in allowed)
                ):
                    raise _Unproven
            form = record.get("v")
            if form == 2:
                if _hash(raw.encode(), prev) != h and record_hash(record, 2) != h:
                    raise _Unproven
            elif form == 1:
                paths = phi_paths(record)
                if all(p in phi for p in paths):
                    clear = dict(record)
                    for p in paths:
                        _set_path(clear, p, phi[p]["value"])
                    if _hash(canonical(clear), prev) != h:
                        raise _Unproven
            else:
                raise _Unproven
            if not included(kind, filters, record, names):
                raise _Unproven
            if not cells_match(values, record, phi, details):
                raise _Unproven
            did = record.get("drug_id")
            cells = drug_cells.get(did)
            if cells is None:
                cells = drug_cells[did] = [(i, r(record, phi, names)) for i, r in drug_columns]
            for i, want in cells:
                if values[i] != want:
                    raise _Unproven
            count += 1
            if form == 2 and "reanchor" not in details:
                if run is not None and seq == run[4] + 1:
                    if prev != run[5] or recorded < run[6]:
                        raise _Unproven
                    run[4], run[5], run[6] = seq, h, recorded
                    continue
                if run is not None:
                    items.append(tuple(run))
                run = ["run", seq, prev, recorded, seq, h, recorded]
                continue
            if run is not None:
                items.append(tuple(run))
                run = None
            anchor = details.get("reanchor") or {}
            if type(anchor) is not dict:
                raise _Unproven
            c1 = record_hash(record, 1) if form == 1 else None
            items.append(("one", seq, prev, h, recorded, form, c1, anchor))
        if run is not None:
            items.append(tuple(run))
        return count, items


def _cells_check(kind: str, at: dict[str, int], names: dict[str, Any]) -> Callable[..., bool]:
    """One function comparing a row's cells (but the drug's, rendered once per drug) with what the
    kind's renderers give for its record: the same comparisons as :meth:`_Segment.take`, written out
    for the kind's columns so a row costs no call per cell. ``details`` is ``record["details"] or {}``
    (a dict: the caller has read it as one); a user's cell is rendered once per user id."""
    users = names.get("users", {})
    lines = ["def match(values, record, phi, details):"]
    for header, spec in KINDS[kind][1]:
        how, _, what = spec.rpartition(":")
        i = at[header]
        if how in ("x", "t", "drug"):
            continue
        if how in ("", "d"):
            source = "record" if how == "" else "details"
            if what == "*":
                lines.append("    v = record.get('details') or {}")
            else:
                lines.append(f"    v = {source}.get({what!r})")
            lines.append(
                f"    if values[{i}] != (v if v.__class__ is str else str(v) if v.__class__ is int else text(v)): "
                "return False"
            )
        elif how in ("mg", "-mg"):
            sign = "-" if how == "-mg" else ""
            lines.append(f"    v = record.get({what!r})")
            lines.append(f"    if values[{i}] != ('' if v is None else format_mg({sign}v)): return False")
        elif how == "user":
            lines.append(f"    v = record.get({what!r})")
            lines.append("    want = seen.get((v.__class__, v))")  # the class too: 1 and True are one key
            lines.append("    if want is None:")
            lines.append("        want = seen[v.__class__, v] = '' if v is None else text(users.get(str(v)))")
            lines.append(f"    if values[{i}] != want: return False")
        elif how == "phi":
            lines.append(
                f"    if values[{i}] != (text(phi[{what!r}]['value']) if {what!r} in phi else ''): return False"
            )
        else:
            raise ValueError(f"unknown column spec {spec}")
    lines.append("    return True")
    scope: dict[str, Any] = {"text": text, "format_mg": format_mg, "users": users, "seen": {}}
    exec(compile("\n".join(lines), f"<{kind} cells>", "exec"), scope)  # noqa: S102 - our own source, above
    return scope["match"]


_WORKER: dict[str, Any] = {}


def _worker_init(manifest: dict[str, Any], head: list[str], path: str) -> None:
    _WORKER.update(check=_RowCheck(manifest, head), path=path)


def _worker_chunk(span: tuple[int, int]) -> tuple[int, list[tuple[Any, ...]]] | None:
    """One byte range of the file, checked; None when it cannot be proven here."""
    import io

    if span[0] < 0:
        return None
    try:
        with open(_WORKER["path"], "rb") as fh:
            fh.seek(span[0])
            data = fh.read(span[1] - span[0])
        return _WORKER["check"].rows(io.StringIO(data.decode("utf-8"), newline=""))
    except Exception:
        return None


class _Chunker:
    """Reads the file once (in a thread of the pool's, while the workers check), hashing it for the
    manifest's digest and cutting it into byte ranges at record ends: a newline with an even count
    of quotes before it (inside a quoted cell the count is odd, as CSV doubles quotes)."""

    def __init__(self, path: str, start: int) -> None:
        self.path, self.start = path, start
        self.digest = hashlib.sha256()
        self.spans = 0
        self.stopped = False

    def __iter__(self) -> Any:
        quotes, pos, cut = 0, 0, self.start + CHUNK_BYTES
        last = self.start
        with open(self.path, "rb") as fh:
            while not self.stopped and (block := fh.read(1 << 22)):
                self.digest.update(block)
                end = pos + len(block)
                off = 0
                while cut < end:
                    if cut > pos + off:
                        quotes += block.count(b'"', off, cut - pos)
                        off = cut - pos
                    nl = block.find(b"\n", off)
                    if nl < 0:
                        break
                    quotes += block.count(b'"', off, nl)
                    off = nl + 1
                    if quotes % 2 == 0:
                        yield last, pos + off
                        self.spans += 1
                        last, cut = pos + off, pos + off + CHUNK_BYTES
                    elif pos + off - last > 4 * CHUNK_BYTES:  # an unbalanced quote: no record ends
                        yield -1, -1
                        return
                    else:
                        cut = pos + off
                quotes += block.count(b'"', off)
                pos = end
        if last < pos:
            yield last, pos
            self.spans += 1


#: the exports the parallel walk proved intact (for the tests: that it does not always fall back)
PARALLEL_WALKS: list[str] = []


def _workers(path: str) -> int:
    """How many processes walk the file: every CPU this process may use, or one for a small file."""
    import os

    try:
        if os.path.getsize(path) < PARALLEL_MIN_BYTES:
            return 1
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    except OSError:
        return 1


def _parallel_walk(
    manifest: dict[str, Any], export_file: str, left_out_path: str | None, workers: int
) -> tuple[int, str]:
    """The rows' count and the file's SHA-256, the chain walked as :class:`_Segment` walks it;
    raises :class:`_Unproven` (never :class:`Altered`) on anything but an intact export."""
    import csv
    import multiprocessing

    with open(export_file, newline="", encoding="utf-8") as fh:
        head = next(csv.reader(fh), None)
        if head != headers(manifest["kind"]):
            raise _Unproven
    with open(export_file, "rb") as fh:  # the header's own bytes: a plain line, no quotes
        start = len(fh.readline())
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    chain = _Segment(manifest)
    chunker = _Chunker(export_file, start)
    left_out = _read_rows(left_out_path, "jsonl") if left_out_path else iter(())
    count = 0
    try:
        pending = next(left_out, None)
        pool = ctx.Pool(workers, initializer=_worker_init, initargs=(manifest, head, export_file))
        try:
            for result in pool.imap(_worker_chunk, chunker):
                if result is None:
                    raise _Unproven
                count += result[0]
                for item in result[1]:
                    seq = item[1]
                    while pending is not None and pending["record"]["seq"] < seq:
                        chain.take(pending, False)
                        pending = next(left_out, None)
                    chain.take_item(item)
        finally:
            # Never Pool.terminate (what leaving ``with Pool`` does): a worker killed while it writes
            # its result holds the result queue's lock for ever, and terminate then waits on it (seen
            # as a hung verify). Stop cutting ranges and let the workers finish the ones handed out.
            chunker.stopped = True
            pool.close()
            pool.join()
        while pending is not None:
            chain.take(pending, False)
            pending = next(left_out, None)
        chain.finish()
    except (Altered, OSError, ValueError, KeyError, TypeError, AttributeError):
        raise _Unproven from None
    finally:
        if hasattr(left_out, "close"):
            left_out.close()
    return count, chunker.digest.hexdigest()


#: the table kinds whose rows are sealed, and the stream of each
LOG_STREAMS = {"access-log": "access", "audit-trail": "audit"}
LOG_LABELS = {"access": "access log", "audit": "audit trail"}

#: how each sealed field is read back from its cell: "int", "int?" (empty: null), "str", "str?"
#: (empty: null) or "json" (an object as compact JSON; empty: null)
_CELL_TYPES: dict[str, dict[str, str]] = {
    "access": {
        "id": "int",
        "occurred_at": "str",
        "user_id": "int?",
        "action": "str",
        "object": "str",
        "outcome": "str",
        "status_code": "int",
        "client_addr": "str",
        "request_id": "str",
    },
    "audit": {
        "id": "int",
        "occurred_at": "str",
        "actor_id": "int?",
        "tag": "str",
        "subject_type": "str",
        "subject_id": "int?",
        "data": "json",
        "request_id": "str?",
    },
}

#: the column naming each stream's user, and the field holding the user's id
_LOG_WHO = {"access": ("user", "user_id"), "audit": ("actor", "actor_id")}


def _row_encoder(stream: str) -> Callable[[dict[str, Any]], bytes]:
    """``canonical_row`` for a row whose values are already plain (str, int, None, dict: a parsed
    export row, its time already in the log's spelling), without building and sorting a dict per row.
    The keys are written in sorted order, as sort_keys does; test_log_encoder_is_byte_identical
    checks it yields the very bytes of ``canonical_row``."""
    names = sorted((*STREAM_FIELDS[stream], "stream"))
    stream_json = _encode_str(stream)

    def encode(fields: dict[str, Any]) -> bytes:
        return (
            "{"
            + ",".join(
                f'"{name}":' + (stream_json if name == "stream" else _json_value(fields[name])) for name in names
            )
            + "}"
        ).encode()

    return encode


_ROW_ENCODERS = {stream: _row_encoder(stream) for stream in STREAM_FIELDS}


def log_fields(stream: str, row: dict[str, Any]) -> dict[str, Any]:
    """An exported log row's sealed fields with their stored types, read back from its text cells."""
    out: dict[str, Any] = {}
    for name, how in _CELL_TYPES[stream].items():
        cell = row.get(name)
        if type(cell) is not str:
            raise Altered(f"id {row.get('id')}: {name} is not a text cell")
        if how == "str":
            out[name] = cell
        elif cell == "" and how != "int":
            out[name] = None
        elif how == "str?":
            out[name] = cell
        elif how == "json":
            out[name] = json.loads(cell)
        else:
            try:
                number = int(cell)
            except ValueError:
                number = None
            if number is None or int.__repr__(number) != cell:
                raise Altered(f"id {row.get('id')}: {name} is not a whole number")
            out[name] = number
    if seal_time(out["occurred_at"]) != out["occurred_at"]:
        raise Altered(f"id {out['id']}: occurred_at is not a UTC time as the log writes it")
    return out


def log_leaf(stream: str, fields: dict[str, Any]) -> bytes:
    """``row_digest`` of a row read back by :func:`log_fields` (the same bytes, faster)."""
    return hashlib.sha256(b"\x00" + _ROW_ENCODERS[stream](fields)).digest()


class _SealedLog:
    """Walks an access-log or audit-trail export against the seals its bundle carries.

    Each exported row's leaf is recomputed from its cells; with the leaves of the rows of the same
    sealed ranges that the period leaves out (carried in the seals file), every range's Merkle root
    must be the one its seal signs, and each seal must be signed by the pinned key and link to the
    one before. Rows past the newest seal cannot be proven yet: they are counted as not yet sealed."""

    def __init__(
        self, manifest: dict[str, Any], stream: str, seals_path: str, trusted: set[str], prints: set[str]
    ) -> None:
        self.stream, self.label = stream, LOG_LABELS[stream]
        sealed = manifest.get("sealed") or {}
        self.through = int(sealed.get("sealed_through") or 0)
        self.purged = int(sealed.get("purged_through") or 0)
        filters = manifest["filters"]
        self.since, self.until = filters.get("since") or "", filters.get("until") or ""
        self.users = manifest["names"].get("users", {})
        self.who_col, self.who_field = _LOG_WHO[stream]
        self.seals: list[dict[str, Any]] = []
        with open(seals_path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    self._add_seal(json.loads(line), trusted, prints)
        if len(self.seals) != int(sealed.get("seals") or 0):
            raise Altered(
                f"the bundle carries {len(self.seals)} {self.label} seals; the manifest says {sealed.get('seals')}"
            )
        self.k, self.leaves = 0, list[tuple[int, bytes]]()  # the seal the walk is in; its exported (id, leaf)
        self.last_id, self.first_id = 0, None
        self.sealed_rows = self.unsealed = 0
        self.missing = ""  # the first range found short, named unless a row out of order explains it

    def _add_seal(self, seal: dict[str, Any], trusted: set[str], prints: set[str]) -> None:
        n = seal.get("seq")
        name = f"{self.label} seal {n}"
        if seal.get("stream") != self.stream:
            raise Altered(f"{name} is not a seal of the {self.label}")
        key = str(seal.get("public_key") or "")
        try:
            pinned = key in trusted or fingerprint(key) in prints
        except ValueError:
            pinned = False
        if not pinned:
            raise Altered(f"{name} is signed by a key that is not the pinned one (re-signed)")
        if not _signature_ok(key, str(seal.get("signature")), seal_message(seal)):
            raise Altered(f"{name}'s signature is invalid: the seal was altered")
        if self.seals:
            before = self.seals[-1]
            if n != before["seq"] + 1:
                raise Altered(f"{self.label} seal {before['seq'] + 1} is missing from the bundle")
            if seal.get("prev_hash") != seal_hash(before):
                raise Altered(f"{name} does not link to seal {before['seq']}")
            if seal.get("first_id") != before["last_id"] + 1:
                raise Altered(f"{name} does not start where seal {before['seq']} ended")
        left, last = [], seal["first_id"] - 1
        for item in seal.get("left_out") or []:
            rid, at = item["id"], item.get("occurred_at") or ""
            if not isinstance(rid, int) or rid <= last or rid > seal["last_id"]:
                raise Altered(f"{name}: left-out id {rid} is out of order or outside the seal's range")
            if self.since <= at < self.until:
                raise Altered(f"{name}: left-out id {rid} is dated inside the export's period")
            left.append((rid, bytes.fromhex(item["leaf"])))
            last = rid
        seal["_left"] = left
        self.seals.append(seal)

    def take(self, row: dict[str, Any]) -> None:
        fields = log_fields(self.stream, row)
        rid = fields["id"]
        where = f"{self.label} id {rid}"
        if rid <= self.last_id:
            raise Altered(f"{where} appears twice, or out of order (after id {self.last_id})")
        if self.missing:  # a range closed short: unless the row it lacked came next, out of order
            raise Altered(self.missing)
        if not self.since <= fields["occurred_at"] < self.until:
            raise Altered(f"{where} is in the export but outside its period")
        uid = fields[self.who_field]
        if row.get(self.who_col) != ("" if uid is None else text(self.users.get(str(uid)))):
            raise Altered(f"{where}: {self.who_col} does not match the names in the manifest")
        leaf = log_leaf(self.stream, fields)
        seals = self.seals
        while self.k < len(seals) and rid > seals[self.k]["last_id"] and not self.missing:
            self._close()
        if self.k < len(seals) and rid >= seals[self.k]["first_id"]:
            self.leaves.append((rid, leaf))
            self.sealed_rows += 1
            if self.first_id is None and not (
                self.k == 0 and (seals[0]["first_id"] <= self.purged + 1 or any(i < rid for i, _ in seals[0]["_left"]))
            ):
                raise Altered(
                    f"the {self.label} seals in the bundle start inside the period: earlier rows may be missing"
                )
        elif rid <= self.through:
            raise Altered(f"{where} is sealed (through id {self.through}) but its seal is not in the bundle")
        else:
            self.unsealed += 1
        if self.first_id is None:
            self.first_id = rid
        self.last_id = rid

    def _close(self) -> None:
        seal = self.seals[self.k]
        name = f"{self.label} seal {seal['seq']} (ids {seal['first_id']}-{seal['last_id']})"
        left, mine = seal["_left"], self.leaves
        merged: list[bytes] = []
        i = j = 0
        while i < len(mine) or j < len(left):
            if j == len(left) or (i < len(mine) and mine[i][0] < left[j][0]):
                merged.append(mine[i][1])
                i += 1
            elif i == len(mine) or left[j][0] < mine[i][0]:
                merged.append(left[j][1])
                j += 1
            else:
                raise Altered(f"{self.label} id {left[j][0]} is both in the export and among the left-out rows")
        if len(merged) < seal["row_count"]:
            self.missing = (
                f"{name}: {seal['row_count'] - len(merged)} row(s) missing from the export and the left-out rows"
            )
            return
        if len(merged) > seal["row_count"]:
            raise Altered(f"{name}: {len(merged) - seal['row_count']} row(s) more than were sealed (inserted)")
        if range_root(merged) != seal["root"]:
            raise Altered(f"{name}: a row was altered (the rows do not hash to the seal's signed root)")
        self.k, self.leaves = self.k + 1, []

    def finish(self) -> None:
        while self.k < len(self.seals) and not self.missing:
            self._close()
        if self.missing:
            raise Altered(self.missing)
        if (
            self.seals
            and self.first_id is not None
            and self.seals[-1]["last_id"] < self.through
            and not any(i > self.last_id for seal in self.seals for i, _ in seal["_left"])
        ):
            raise Altered(f"the {self.label} seals in the bundle end inside the period: later rows may be missing")

    def summary(self) -> str:
        return f", {self.sealed_rows} in {len(self.seals)} {self.label} seals, {self.unsealed} not yet sealed"


def verify(
    export_path: str,
    manifest_path: str | None,
    trusted_keys: set[str],
    fingerprints: set[str],
    walk: bool = True,
    parallel: bool = False,
) -> str:
    """Raise :class:`Altered` naming the first problem; return a one-line summary when intact.

    ``walk`` False checks the signatures and every file's digest but not the rows against the chain:
    the exporter's own check of a bundle it has just written from the chain (clinic-verify always walks).
    ``parallel``: a large CSV may be walked by worker processes (clinic-verify's own process only:
    forking a server's threaded process is not safe)."""
    import os

    manifest_path = manifest_path or export_path + ".manifest.json"
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise Altered(f"the manifest cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise Altered("the manifest is not a clinic export manifest")
    key = str(manifest.get("public_key", ""))
    try:
        pinned = key in trusted_keys or fingerprint(key) in fingerprints
    except ValueError:
        pinned = False
    if not pinned:
        raise Altered("the manifest is signed by a key that is not the pinned one")
    if not _signature_ok(key, str(manifest.get("signature", "")), _canonical_manifest(manifest)):
        raise Altered("the manifest's signature is invalid")
    seg = manifest.get("segment")
    if seg is not None:
        cp = seg.get("checkpoint") or {}
        if (
            cp.get("public_key") not in trusted_keys
            and fingerprint(str(cp.get("public_key") or "00")) not in fingerprints
        ):
            raise Altered("the chain checkpoint is signed by a key that is not the pinned one")
        message = checkpoint_message(cp.get("location_id"), cp.get("seq"), cp.get("head_hash"), cp.get("signed_at"))
        if not _signature_ok(str(cp.get("public_key")), str(cp.get("signature")), message):
            raise Altered("the chain checkpoint's signature is invalid")
        if (
            cp.get("seq") != seg["last_seq"]
            or cp.get("head_hash") != seg["last_hash"]
            or cp.get("location_id") != seg["location_id"]
        ):
            raise Altered("the segment does not end at its signed checkpoint")
    base = os.path.dirname(os.path.abspath(manifest_path))
    files = {f["role"]: f for f in manifest.get("files", [])}
    rows_file = files.get("rows") or files.get("export")
    if rows_file is None:
        raise Altered("the manifest names no export file")
    export_file = os.path.join(base, rows_file["name"]) if rows_file is not files.get("export") else export_path
    fmt = manifest["file_format"] if rows_file is files.get("export") else "jsonl"
    count: Any = 0 if walk else manifest.get("rows")
    span = ""
    rows = left_out = None
    digests: dict[str, str] = {}
    workers = _workers(export_file) if parallel and walk and fmt == "csv" and seg is not None else 1
    if workers > 1:
        try:
            left_path = os.path.join(base, files["left-out"]["name"]) if "left-out" in files else None
            count, digests[export_path] = _parallel_walk(manifest, export_file, left_path, workers)
            walk = False  # walked in parallel and intact: what follows checks the count and the digests
            PARALLEL_WALKS.append(export_file)
        except Exception:
            count, digests = 0, {}
    try:
        rows = iter(()) if not walk else _read_rows(export_file, fmt)
        if walk and fmt == "csv":
            head = next(rows)["__header__"]
            if head != headers(manifest["kind"]):
                raise Altered("the export's header row is not its kind's")  # noqa: TRY301
        if not walk:
            pass
        elif seg is None and manifest["kind"] in LOG_STREAMS and "seals" in files:
            log = _SealedLog(
                manifest,
                LOG_STREAMS[manifest["kind"]],
                os.path.join(base, files["seals"]["name"]),
                trusted_keys,
                fingerprints,
            )
            for row in rows:
                log.take(row)
                count += 1
            log.finish()
            span = log.summary()
        elif seg is None:
            for _ in rows:
                count += 1
        else:
            chain = _Segment(manifest)
            left_out = (
                _read_rows(os.path.join(base, files["left-out"]["name"]), "jsonl") if "left-out" in files else iter(())
            )
            pending = next(left_out, None)
            for row in rows:
                seq = (row.get("record") or {}).get("seq")
                while pending is not None and isinstance(seq, int) and pending["record"]["seq"] < seq:
                    chain.take(pending, False)
                    pending = next(left_out, None)
                chain.take(row, True)
                count += 1
            while pending is not None:
                chain.take(pending, False)
                pending = next(left_out, None)
            chain.finish()
    except Altered:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Altered(f"the export cannot be read ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    finally:
        for stream in (rows, left_out):
            if stream is not None and hasattr(stream, "close"):
                stream.close()
    if count != manifest.get("rows"):
        raise Altered(f"the export has {count} rows; the manifest says {manifest.get('rows')}")
    for f in manifest.get("files", []):
        path = export_path if f["role"] == "export" else os.path.join(base, f["name"])
        if not os.path.isfile(path):
            raise Altered(f"{f['name']} is missing")
        if (digests.get(path) or _file_digest(path)) != f.get("sha256"):
            raise Altered(f"{f['name']} does not match its SHA-256 in the manifest")
    if seg:
        span = f", seq {seg['first_seq']}..{seg['last_seq']}"
    return f"{manifest['kind']}: {count} rows{span}, signed by key {fingerprint(key)[:16]}"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="clinic-verify", description="Verify a clinic-ops auditor export offline.")
    parser.add_argument("export", help="the export file (CSV, JSON Lines or PDF)")
    parser.add_argument("--manifest", help="its manifest (default: EXPORT.manifest.json)")
    parser.add_argument(
        "--public-key", action="append", default=[], help="the pinned Ed25519 public key (hex or PEM file)"
    )
    parser.add_argument("--fingerprint", action="append", default=[], help="or the pinned key's SHA-256 fingerprint")
    args = parser.parse_args(argv)
    try:
        keys = {load_public_key(k) for k in args.public_key}
    except (OSError, ValueError) as exc:
        parser.error(f"--public-key: {exc}")
    prints = {f.strip().lower() for f in args.fingerprint}
    if not keys and not prints:
        parser.error("pin the signing key: --public-key or --fingerprint (never trust the key the export names)")
    try:
        summary = verify(args.export, args.manifest, keys, prints, parallel=True)
    except Altered as problem:
        print(f"ALTERED: {problem}", file=sys.stdout)  # noqa: T201 - the verifier's answer
        return 1
    print(f"OK: {summary}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
