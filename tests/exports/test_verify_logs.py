"""clinic-verify on access-log and audit-trail exports, against the seals their bundle carries (SYS-05,
HIP-04): every exported row's leaf and every range's Merkle root recomputed, each seal's signature
checked with the pinned key; rows past the newest seal counted as not yet sealed. Each mutation is
made on a copy of an untouched bundle and must be rejected naming it. Own database per backend."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic.exports import verifier
from tests.conftest import temp_app
from tests.exports.test_verify import copy, csv_rows, run, write_csv


@pytest.fixture(scope="module")
def logs(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """12 access rows and 12 audit rows sealed 5 to a seal, then 3 more of each not yet sealed;
    exports whose period starts at the 4th row, so the first seal has rows left out."""
    from clinic.audit import seals
    from clinic.audit.models import AccessEvent, AuditEvent
    from clinic.audit.service import access_event, log_access, record
    from clinic.audit.tags import Tag
    from clinic.core import signing
    from clinic.core.tx import commit
    from clinic.exports import writer
    from clinic.extensions import db
    from tests.exports.conftest import new_user

    tmp = tmp_path_factory.mktemp("logexports")
    with temp_app(backend, "exportlogs", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(tmp / "cp.jsonl")) as app:
        user = new_user(app, "admin")

        def rows(n: int) -> None:
            with app.app_context():
                for i in range(n):
                    log_access(
                        access_event(
                            user_id=user.id if i % 2 else None,
                            action=f"GET exports.thing{i}",
                            obj=f"export:{i}",
                            outcome="allowed" if i % 3 else "denied",
                            status_code=200 if i % 3 else 403,
                            client_addr="192.0.2.7",
                            request_id=uuid.uuid4().hex,
                        )
                    )
                    record(actor=None, tag=Tag.auth_user_create, subject=("user", i), data={"n": i, "note": 'é "q"'})
                commit()

        rows(12)
        with app.app_context():
            # the rows the fixture's user made first (creating it) are sealed with these
            seals.seal_all(max_rows=5)
            commit()
            access_times = [e.occurred_at for e in db.session.scalars(db.select(AccessEvent).order_by(AccessEvent.id))]
            audit_times = [e.occurred_at for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))]
        rows(3)
        with app.app_context():
            unsealed_since = max(
                e.occurred_at
                for e in db.session.scalars(db.select(AccessEvent).order_by(AccessEvent.id.desc()).limit(3))
            )
        out: dict[str, Any] = {"app": app}
        with app.app_context():
            key = signing.public_key_hex()
            for name, kind, fmt, since, until in (
                ("access-csv", "access-log", "csv", access_times[3], None),
                ("audit-jsonl", "audit-trail", "jsonl", audit_times[3], None),
                ("access-middle", "access-log", "csv", access_times[3], access_times[8]),
                ("access-unsealed", "access-log", "jsonl", unsealed_since, None),
            ):
                spec = writer.Spec(
                    kind=kind,
                    file_format=fmt,
                    since=since,
                    until=until or since + timedelta(days=1),
                    generated_by={"name": "test"},
                )
                path = tmp / f"{name}.{fmt}"
                writer.write(spec, path)
                commit()
                out[name] = (path, key)
        yield out


@pytest.mark.parametrize("name", ["access-csv", "audit-jsonl", "access-middle"])
def test_untouched_log_exports_verify_against_their_seals(logs, name):
    code, out = run(*logs[name])
    assert code == 0, out
    manifest = json.loads(Path(str(logs[name][0]) + ".manifest.json").read_text())
    assert manifest["sealed"]["seals"] >= 2
    if name != "access-middle":
        assert "3 not yet sealed" in out, out
    else:
        assert "0 not yet sealed" in out, out


def test_a_period_past_the_newest_seal_is_all_not_yet_sealed(logs):
    """Nothing to prove against yet: the rows are counted, not failed, and no seal is carried."""
    code, out = run(*logs["access-unsealed"])
    assert code == 0, out
    assert "0 in 0 access log seals" in out and "not yet sealed" in out and " 0 not yet sealed" not in out, out


def test_the_first_seal_carries_the_leaves_of_the_rows_before_the_period(logs):
    path = Path(str(logs["access-csv"][0]) + ".seals.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["seq"] == 1 and len(first["left_out"]) >= 3
    assert all(len(x["leaf"]) == 64 and "action" not in x for x in first["left_out"])


def test_the_standalone_file_checks_a_log_export(logs, tmp_path):
    lone = tmp_path / "clinic_verify.py"
    shutil.copy(verifier.__file__, lone)
    path, key = logs["access-csv"]
    done = subprocess.run(
        [sys.executable, "-I", str(lone), str(path), "--public-key", key], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "not yet sealed" in done.stdout, done.stdout + done.stderr


def _cell(rows: list[list[str]], header: str, value: str, row: int = 2) -> None:
    rows[row][rows[0].index(header)] = value


def _ids(rows: list[list[str]]) -> list[int]:
    return [int(r[0]) for r in rows[1:]]


def _insert_forged(rows: list[list[str]]) -> None:
    forged = list(rows[1])
    forged[0] = str(int(forged[0]) - 1)  # the id of a row the period leaves out
    rows.insert(1, forged)


CSV_MUTATIONS = {
    "edit a field": (lambda r: _cell(r, "action", "GET something.else"), "a row was altered"),
    "edit the object": (lambda r: _cell(r, "object", "patient:1", row=3), "a row was altered"),
    "edit a status code's spelling": (lambda r: _cell(r, "status_code", "0200"), "not a whole number"),
    "edit the user's name": (lambda r: _cell(r, "user", "Someone Else", row=3), "user does not match"),
    "move a row out of its period": (lambda r: _cell(r, "occurred_at", "2000-01-01T00:00:00.000000Z"), "period"),
    "drop a row": (lambda r: r.pop(3), "row(s) missing"),
    "insert a row": (_insert_forged, "both in the export and among the left-out rows"),
    "swap two rows": (lambda r: r.__setitem__(slice(2, 4), [r[3], r[2]]), "out of order"),
    "duplicate a row": (lambda r: r.insert(3, list(r[2])), "appears twice"),
    "truncate into the sealed rows": (lambda r: r.__delitem__(slice(-6, None)), "row(s) missing"),
}


@pytest.mark.parametrize("mutation", list(CSV_MUTATIONS))
def test_access_log_mutations_are_named(logs, tmp_path, mutation):
    path, key = copy(logs["access-csv"], tmp_path)
    rows = csv_rows(path)
    change, named = CSV_MUTATIONS[mutation]
    change(rows)
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and named in out, out


def test_an_unsealed_row_edit_is_caught_by_the_files_digest(logs, tmp_path):
    path, key = copy(logs["access-csv"], tmp_path)
    rows = csv_rows(path)
    _cell(rows, "action", "GET forged.row", row=len(rows) - 1)
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and "does not match its SHA-256" in out, out


def _seals(path: Path) -> tuple[Path, list[dict[str, Any]]]:
    spath = Path(str(path) + ".seals.jsonl")
    return spath, [json.loads(x) for x in spath.read_text().splitlines()]


def _write_seals(spath: Path, lines: list[dict[str, Any]]) -> None:
    spath.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_a_flipped_seal_signature_bit_is_named(logs, tmp_path):
    path, key = copy(logs["access-csv"], tmp_path)
    spath, lines = _seals(path)
    sig = bytearray(bytes.fromhex(lines[1]["signature"]))
    sig[7] ^= 0x01
    lines[1]["signature"] = sig.hex()
    _write_seals(spath, lines)
    code, out = run(path, key)
    assert code == 1 and "access log seal 2's signature is invalid" in out, out


def test_a_seal_resigned_with_another_key_is_named(logs, tmp_path):
    """The forger edits a row, recomputes the range's root and signs the seal with their own key."""
    path, key = copy(logs["access-csv"], tmp_path)
    rows = csv_rows(path)
    _cell(rows, "action", "GET forged.action")
    write_csv(path, rows)
    spath, lines = _seals(path)
    seal = lines[0]
    fields = verifier.log_fields("access", dict(zip(rows[0], rows[2], strict=True)))
    exported = {
        int(r[0]): verifier.log_leaf("access", verifier.log_fields("access", dict(zip(rows[0], r, strict=True))))
        for r in rows[1:]
    }
    exported[fields["id"]] = verifier.log_leaf("access", fields)
    leaves = {x["id"]: bytes.fromhex(x["leaf"]) for x in seal["left_out"]}
    leaves |= {i: leaf for i, leaf in exported.items() if seal["first_id"] <= i <= seal["last_id"]}
    seal["root"] = verifier.range_root([leaves[i] for i in sorted(leaves)])
    other = Ed25519PrivateKey.generate()
    seal["public_key"] = other.public_key().public_bytes_raw().hex()
    seal["signature"] = other.sign(verifier.seal_message(seal)).hex()
    _write_seals(spath, lines)
    code, out = run(path, key)
    assert code == 1 and "access log seal 1 is signed by a key that is not the pinned one" in out, out


def test_a_seal_removed_from_the_bundle_is_named(logs, tmp_path):
    path, key = copy(logs["access-csv"], tmp_path)
    spath, lines = _seals(path)
    _write_seals(spath, [lines[0], *lines[2:]])
    code, out = run(path, key)
    assert code == 1 and "seal 2 is missing from the bundle" in out, out


def test_an_edited_left_out_leaf_is_named(logs, tmp_path):
    path, key = copy(logs["access-csv"], tmp_path)
    spath, lines = _seals(path)
    leaf = lines[0]["left_out"][0]["leaf"]
    lines[0]["left_out"][0]["leaf"] = ("0" if leaf[0] != "0" else "1") + leaf[1:]
    _write_seals(spath, lines)
    code, out = run(path, key)
    assert code == 1 and "access log seal 1 (ids" in out and "a row was altered" in out, out


def test_an_audit_trail_data_edit_is_named(logs, tmp_path):
    path, key = copy(logs["audit-jsonl"], tmp_path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    lines[1]["data"] = json.dumps({"n": 999, "note": 'é "q"'}, ensure_ascii=False, separators=(",", ":"))
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    code, out = run(path, key)
    assert code == 1 and "audit trail seal" in out and "a row was altered" in out, out


def test_an_audit_trail_row_dropped_is_named(logs, tmp_path):
    path, key = copy(logs["audit-jsonl"], tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("".join(x + "\n" for x in lines[:1] + lines[2:]))
    code, out = run(path, key)
    assert code == 1 and "row(s) missing" in out, out


# --- the specialised row encoder is byte-identical to the general canonical form ------------------


def _text(rng: random.Random) -> str:
    alphabet = 'ab"\\/\n\t\x00\x1f\x7fé€\u2028\U0001f600 :,{}'
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


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
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_log_encoder_is_byte_identical():
    """Over many randomized rows of both streams, as the verifier reads them back from an export."""
    rng = random.Random(13)
    for n in range(3000):
        at = verifier.seal_time(datetime(2, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(0, 2**57)))
        access = {
            "id": rng.randint(1, 2**40),
            "occurred_at": at,
            "user_id": rng.choice([None, rng.randint(1, 10**9)]),
            "action": _text(rng),
            "object": _text(rng),
            "outcome": _text(rng),
            "status_code": rng.randint(100, 599),
            "client_addr": _text(rng),
            "request_id": _text(rng),
        }
        audit = {
            "id": n + 1,
            "occurred_at": at,
            "actor_id": rng.choice([None, rng.randint(1, 10**9)]),
            "tag": _text(rng),
            "subject_type": _text(rng),
            "subject_id": rng.choice([None, -5, rng.randint(1, 10**9)]),
            "data": rng.choice([None, _value(rng, 1) if n % 2 else {_text(rng): _value(rng, 1)}]),
            "request_id": rng.choice([None, _text(rng)]),
        }
        for stream, row in (("access", access), ("audit", audit)):
            assert verifier.log_leaf(stream, row) == verifier.row_digest(stream, row), row
            cells = {k: verifier.text(v) for k, v in row.items()}
            if stream == "audit" and not isinstance(row["data"], dict):
                continue  # the column holds an object: only objects round-trip through a cell
            if stream == "audit" and row["request_id"] == "":
                continue  # an empty request id is written as no request id (none is ever stored)
            back = verifier.log_fields(stream, {**cells, "user": "", "actor": ""})
            assert verifier.log_leaf(stream, back) == verifier.row_digest(stream, row), row


def test_access_rows_in_csv_round_trip_through_the_cells(tmp_path):
    """A row written with the csv module and read back gives the same leaf (quotes, newlines, é)."""
    rng = random.Random(7)
    path = tmp_path / "x.csv"
    rows = []
    for i in range(200):
        rows.append(
            {
                "id": i + 1,
                "occurred_at": verifier.seal_time(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)),
                "user_id": None,
                "action": _text(rng).replace("\x00", ""),
                "object": _text(rng).replace("\x00", "").replace("\r", ""),
                "outcome": "allowed",
                "status_code": 200,
                "client_addr": "x",
                "request_id": "r",
            }
        )
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerows([verifier.text(v) for v in r.values()] for r in rows)
    with path.open(newline="", encoding="utf-8") as fh:
        for row, cells in zip(rows, csv.reader(fh), strict=True):
            back = verifier.log_fields("access", dict(zip(row, cells, strict=True)))
            assert verifier.log_leaf("access", back) == verifier.row_digest("access", row)


def _resign_with_clinic_key(app, path: Path, change) -> None:  # type: ignore[no-untyped-def]
    """What only the clinic's own server could do: change the bundle and sign its manifest again."""
    import hashlib

    from clinic.core import signing

    mpath = Path(str(path) + ".manifest.json")
    manifest = json.loads(mpath.read_text())
    change(manifest)
    for f in manifest["files"]:
        f["sha256"] = hashlib.sha256((path.parent / f["name"]).read_bytes()).hexdigest()
    with app.app_context():
        signed = verifier.sign_manifest(
            {k: v for k, v in manifest.items() if k != "signature"}, signing.sign, signing.public_key_hex()
        )
    mpath.write_text(json.dumps(signed))


def test_a_bundle_whose_seals_start_inside_the_period_is_refused(logs, tmp_path):
    """Dropping the period's first rows with the seal that holds them, even re-signed by the clinic."""
    path, key = copy(logs["access-middle"], tmp_path)
    spath, lines = _seals(path)
    rows = csv_rows(path)
    first = lines[0]
    write_csv(path, [rows[0], *(r for r in rows[1:] if int(r[0]) > first["last_id"])])
    _write_seals(spath, lines[1:])
    _resign_with_clinic_key(
        logs["app"],
        path,
        lambda m: m.update(rows=len(csv_rows(path)) - 1, sealed={**m["sealed"], "seals": len(lines) - 1}),
    )
    code, out = run(path, key)
    assert code == 1 and "start inside the period" in out, out


def test_a_bundle_whose_seals_end_inside_the_period_is_refused(logs, tmp_path):
    path, key = copy(logs["access-middle"], tmp_path)
    spath, lines = _seals(path)
    rows = csv_rows(path)
    last = lines[-1]
    assert last["left_out"], "the period ends inside the last seal carried"
    write_csv(path, [rows[0], *(r for r in rows[1:] if int(r[0]) < last["first_id"])])
    _write_seals(spath, lines[:-1])
    _resign_with_clinic_key(
        logs["app"],
        path,
        lambda m: m.update(rows=len(csv_rows(path)) - 1, sealed={**m["sealed"], "seals": len(lines) - 1}),
    )
    code, out = run(path, key)
    assert code == 1 and "end inside the period" in out, out
