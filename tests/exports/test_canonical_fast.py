"""The faster spellings of the canonical form give the very bytes of the general one: existing chains
and exports must keep verifying. Randomized entries (seeded), compared with the reference code the
faster paths replaced, kept here verbatim."""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from clinic.exports import verifier

_REF = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _ref_commitment(salt_hex: str, value: Any) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + _REF(value).encode()).hexdigest()


def _ref_set_path(fields: dict[str, Any], path: str, value: Any) -> None:
    if path.startswith("details."):
        fields["details"] = {**(fields.get("details") or {}), path[8:]: value}
    else:
        fields[path] = value


def _ref_committed(fields: dict[str, Any], salts: dict[str, str]) -> dict[str, Any]:
    record = verifier._hashed(fields)
    for path in verifier.phi_paths(record):
        _ref_set_path(record, path, _ref_commitment(salts[path], verifier.get_path(record, path)))
    return record


def _text(rng: random.Random) -> str:
    alphabet = 'ab"\\/\n\t\x00\x1f\x7fé€\u2028\U0001f600 :,{}'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randint(0, 6 if depth < 2 else 3)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([0, -1, 7, 2**63, -(2**70)])
    if pick == 2:
        return _text(rng)
    if pick == 3:
        return rng.choice([True, False])
    if pick == 4:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _entry(rng: random.Random, seq: int) -> dict[str, Any]:
    at = datetime(1000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(0, 2**57))
    details: dict[str, Any] | None = rng.choice([None, {}])
    if details is not None or rng.random() < 0.7:
        details = {_text(rng): _value(rng, 1) for _ in range(rng.randint(0, 4))}
        for key in ("patient_name", "patient_address", "patient_dob", "lot_number"):
            if rng.random() < 0.6:
                details[key] = _value(rng, 1)
    return {
        "location_id": rng.randint(1, 9),
        "seq": seq,
        "kind": rng.choice(["administration", "waste", "receipt", "count"]),
        "container_id": rng.choice([None, rng.randint(1, 10**6)]),
        "drug_id": rng.choice([None, 3]),
        "delta_ug": rng.randint(-(10**9), 10**9),
        "balance_after_ug": rng.randint(0, 10**9),
        "patient_id": rng.choice([None, rng.randint(1, 10**6)]),
        "appointment_id": rng.choice([None, 5]),
        "actor_id": rng.randint(1, 99),
        "witness_id": rng.choice([None, 4]),
        "second_witness_id": None,
        "corrects_seq": rng.choice([None, seq - 1]),
        "occurred_at": at,
        "recorded_at": at + timedelta(seconds=rng.randint(0, 10)),
        "reason": rng.choice([None, _text(rng)]),
        "details": details,
        "prev_hash": secrets.token_hex(32),
    }


def test_commitments_and_committed_records_are_byte_identical():
    rng = random.Random(1313)
    for seq in range(1, 4001):
        fields = _entry(rng, seq)
        before = json.dumps(fields, default=str, sort_keys=True)
        salts = {p: secrets.token_hex(16) for p in verifier.phi_paths(fields)}
        fast, ref = verifier.committed(fields, salts), _ref_committed(fields, salts)
        assert verifier.canonical(fast, 2) == verifier.canonical(ref, 2), fields
        assert verifier.record_hash(fast) == verifier.record_hash(ref)
        assert json.dumps(fields, default=str, sort_keys=True) == before, "the caller's fields are not changed"
        value = _value(rng)
        salt = secrets.token_hex(16)
        assert verifier.commitment(salt, value) == _ref_commitment(salt, value)


def test_csv_line_is_the_csv_modules():
    """``writer.csv_line`` writes what csv.writer writes (QUOTE_MINIMAL), quoting a bare carriage
    return too (csv.writer with "\\n" line ends leaves it bare, which csv.reader then splits a row
    on); csv.reader reads every line back to its cells."""
    import csv
    import io

    from clinic.exports.writer import csv_line

    rng = random.Random(5)
    alphabet = 'ab,"\n\r\t é\x00{}:'
    for _ in range(20000):
        values = [
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 7))) if rng.random() < 0.9 else None
            for _ in range(rng.randint(2, 6))
        ]
        line = csv_line(values)
        crlf = io.StringIO()
        csv.writer(crlf, lineterminator="\r\n").writerow(values)  # quotes on "\r" and "\n" alike
        assert line[:-1] == crlf.getvalue()[:-2], values
        assert next(csv.reader(io.StringIO(line, newline=""))) == ["" if v is None else v for v in values]
