"""clinic-verify against every mutation of issue 13's Acceptance (F5), on real bundles.

Each mutation is made on a copy of an untouched bundle and must be rejected with its own name;
the untouched bundles, with PHI and without, must pass. Bundles are written once per module.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic.exports import verifier
from tests.exports.conftest import period

VERIFIER = Path(verifier.__file__)


def _write(shop, tmp: Path, kind: str, fmt: str, profile: str, **filters) -> tuple[Path, str]:
    from clinic.core import signing
    from clinic.core.tx import commit
    from clinic.exports import writer

    since, until = period()
    with shop.app.app_context():
        spec = writer.Spec(
            kind=kind,
            file_format=fmt,
            since=datetime.fromisoformat(since),
            until=datetime.fromisoformat(until),
            profile=profile,
            location_id=shop.location_id,
            generated_by={"name": "test"},
            **filters,
        )
        out = tmp / f"{kind}-{profile}.{fmt}"
        writer.write(spec, out)
        commit()
        return out, signing.public_key_hex()


@pytest.fixture(scope="module")
def bundles(shop, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    tmp = tmp_path_factory.mktemp("bundles")
    return {
        "csv-full": _write(shop, tmp, "dispensing-log", "csv", "full"),
        "jsonl-nophi": _write(shop, tmp, "dispensing-log", "jsonl", "no-phi"),
        "waste-csv": _write(shop, tmp, "waste-log", "csv", "dea-inspection"),
        "ledger-jsonl": _write(shop, tmp, "ledger", "jsonl", "dea-inspection"),
    }


def run(path: Path, key: str) -> tuple[int, str]:
    out = io.StringIO()
    old, sys.stdout = sys.stdout, out
    try:
        code = verifier.main([str(path), "--public-key", key])
    finally:
        sys.stdout = old
    return code, out.getvalue()


def copy(bundle: tuple[Path, str], tmp: Path) -> tuple[Path, str]:
    path, key = bundle
    for f in path.parent.glob(path.name + "*"):
        shutil.copy(f, tmp / f.name)
    return tmp / path.name, key


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


@pytest.mark.parametrize("name", ["csv-full", "jsonl-nophi", "waste-csv", "ledger-jsonl"])
def test_untouched_exports_verify(bundles, name):
    code, out = run(*bundles[name])
    assert code == 0, out
    assert out.startswith("OK:")


def test_with_phi_carries_the_name_and_without_only_commitments(shop, bundles):
    full = bundles["csv-full"][0].read_text(encoding="utf-8")
    bare = bundles["jsonl-nophi"][0].read_text(encoding="utf-8")
    assert "Ada Lovelace" in full and "Émile Zola" in full
    assert "Lovelace" not in bare and "Elm St" not in bare
    line = json.loads(bare.splitlines()[0])
    assert line["phi"] == {} and len(line["record"]["details"]["patient_name"]) == 64
    # the dispensing log holds exactly the two administrations of this location (DEA-26)
    assert [json.loads(x)["record"]["seq"] for x in bare.splitlines()] == shop.seqs["main"][:2]
    manifest = json.loads(Path(str(bundles["jsonl-nophi"][0]) + ".manifest.json").read_text())
    assert manifest["rows"] == 2 and manifest["registrant"]["dea_registration"]
    assert "price" not in json.dumps(manifest["columns"]) and "charge" not in json.dumps(manifest["columns"])


def test_the_standalone_file_runs_alone(bundles, tmp_path):
    """The verifier copied anywhere, run with no clinic package importable (python -I)."""
    lone = tmp_path / "clinic_verify.py"
    shutil.copy(VERIFIER, lone)
    path, key = bundles["csv-full"]
    done = subprocess.run(
        [sys.executable, "-I", str(lone), str(path), "--fingerprint", verifier.fingerprint(key)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    refused = subprocess.run(
        [sys.executable, "-I", str(lone), str(path), "--public-key", other], capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "not the pinned one" in refused.stdout


def _edit_cell(rows: list[list[str]], header: str, value: str, row: int = 1) -> None:
    rows[row][rows[0].index(header)] = value


def _edit_record(rows: list[list[str]], row: int, **changes) -> None:
    i = rows[0].index("record")
    record = json.loads(rows[row][i])
    record.update(changes)
    rows[row][i] = json.dumps(record)


CSV_MUTATIONS = {
    "edit a quantity cell": (lambda r: _edit_cell(r, "quantity_mg", "3.5"), "quantity_mg does not match"),
    "edit a quantity in the record": (lambda r: _edit_record(r, 1, delta_ug=-3500), "does not match its hash"),
    "edit the actor's name": (lambda r: _edit_cell(r, "administered_by", "Someone Else"), "administered_by"),
    "edit the actor in the record": (lambda r: _edit_record(r, 1, actor_id=1), "does not match its hash"),
    "edit a patient's name": (lambda r: _edit_cell(r, "patient_name", "Grace Hopper"), "patient_name"),
    "edit the drug's name": (lambda r: _edit_cell(r, "drug_name", "Other drug"), "drug_name does not match"),
    # the second row of the same drug: its columns are compared with those rendered for the first
    "edit a later row's NDC": (lambda r: _edit_cell(r, "ndc", "00000-000-00", row=2), "ndc does not match"),
    "drop a row": (lambda r: r.pop(1), "is missing"),
    "insert a row": (lambda r: r.insert(2, list(r[1])), "appears twice"),
    "swap two rows": (lambda r: r.__setitem__(slice(1, 3), [r[2], r[1]]), "is missing"),
    "duplicate a row": (lambda r: r.append(list(r[-1])), "appears twice"),
    "truncate the tail": (lambda r: r.pop(), "is missing"),
}


@pytest.mark.parametrize("mutation", list(CSV_MUTATIONS))
def test_csv_mutations_are_named(bundles, tmp_path, mutation):
    path, key = copy(bundles["csv-full"], tmp_path)
    rows = csv_rows(path)
    change, named = CSV_MUTATIONS[mutation]
    change(rows)
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and named in out, out


def test_a_witness_edit_is_named(bundles, tmp_path):
    path, key = copy(bundles["waste-csv"], tmp_path)
    rows = csv_rows(path)
    _edit_cell(rows, "witness", "Nobody")
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and "witness does not match" in out, out
    rows = csv_rows(bundles["waste-csv"][0])
    _edit_record(rows, 1, witness_id=None)
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and "does not match its hash" in out, out


def _recompute(lines: list[dict], start_prev: str) -> None:
    prev = start_prev
    for line in lines:
        line["record"]["prev_hash"] = prev
        line["hash"] = verifier.record_hash(line["record"], line["record"]["v"])
        prev = line["hash"]


def _segment_lines(path: Path) -> tuple[list[dict], list[dict]]:
    main = [json.loads(x) for x in path.read_text().splitlines()]
    left = [json.loads(x) for x in Path(str(path) + ".left-out.jsonl").read_text().splitlines()]
    return main, left


def _write_segment(path: Path, main: list[dict], left: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in main))
    Path(str(path) + ".left-out.jsonl").write_text("".join(json.dumps(x) + "\n" for x in left))


def test_recomputing_the_whole_chain_is_caught_by_the_signed_checkpoint(bundles, tmp_path):
    path, key = copy(bundles["jsonl-nophi"], tmp_path)
    main, left = _segment_lines(path)
    main[0]["record"]["delta_ug"] -= 1000
    main[0]["quantity_mg"] = verifier.format_mg(-main[0]["record"]["delta_ug"])  # a careful forger
    manifest = json.loads(Path(str(path) + ".manifest.json").read_text())
    both = sorted(main + left, key=lambda x: x["record"]["seq"])
    _recompute(both, manifest["segment"]["first_prev_hash"])
    _write_segment(path, main, left)
    code, out = run(path, key)
    assert code == 1 and "signed checkpoint" in out, out


def _resign(path: Path, change) -> str:
    mpath = Path(str(path) + ".manifest.json")
    manifest = json.loads(mpath.read_text())
    change(manifest)
    other = Ed25519PrivateKey.generate()
    public = other.public_key().public_bytes_raw().hex()
    signed = verifier.sign_manifest(
        {k: v for k, v in manifest.items() if k != "signature"}, lambda m: other.sign(m).hex(), public
    )
    mpath.write_text(json.dumps(signed))
    return public


def test_resigning_with_another_key_is_named(bundles, tmp_path):
    path, key = copy(bundles["csv-full"], tmp_path)
    rows = csv_rows(path)
    rows.pop()
    write_csv(path, rows)
    _resign(path, lambda m: m.update(rows=m["rows"] - 1))
    code, out = run(path, key)
    assert code == 1 and "not the pinned one" in out, out


def test_a_flipped_signature_bit_is_named(bundles, tmp_path):
    path, key = copy(bundles["csv-full"], tmp_path)
    mpath = Path(str(path) + ".manifest.json")
    manifest = json.loads(mpath.read_text())
    sig = bytearray(bytes.fromhex(manifest["signature"]))
    sig[5] ^= 0x01
    manifest["signature"] = sig.hex()
    mpath.write_text(json.dumps(manifest))
    code, out = run(path, key)
    assert code == 1 and "signature is invalid" in out, out


def test_one_flipped_byte_anywhere_is_rejected(bundles, tmp_path):
    """Every file of two bundles, at positions spread over each file (F5: byte flip in file)."""
    checked = 0
    for name in ("csv-full", "ledger-jsonl"):
        original, key = bundles[name]
        for f in sorted(original.parent.glob(original.name + "*")):
            data = f.read_bytes()
            if not data:
                continue  # the ledger kind leaves nothing out
            for pos in sorted({0, len(data) // 3, len(data) // 2, (2 * len(data)) // 3, len(data) - 2}):
                work = tmp_path / f"{name}-{checked}"
                work.mkdir()
                path, _ = copy((original, key), work)
                target = work / f.name
                flipped = bytearray(data)
                flipped[pos] ^= 0x04
                target.write_bytes(bytes(flipped))
                code, out = run(path, key)
                assert code == 1 and out.startswith("ALTERED:"), (f.name, pos, out)
                checked += 1
    assert checked >= 20


def test_a_filtered_export_cannot_hide_a_row_among_the_left_out(bundles, tmp_path):
    """Moving a dispensing row to the left-out file (the digest re-signed away) is still named."""
    path, key = copy(bundles["jsonl-nophi"], tmp_path)
    main, left = _segment_lines(path)
    left.append({"hash": main[0]["hash"], "record": main[0]["record"]})
    left.sort(key=lambda x: x["record"]["seq"])
    _write_segment(path, main[1:], left)
    code, out = run(path, key)
    assert code == 1 and "belongs in the export but was left out" in out, out


def test_no_pinned_key_is_a_usage_error(bundles):
    path, _ = bundles["csv-full"]
    with pytest.raises(SystemExit) as stop:
        verifier.main([str(path)])
    assert stop.value.code == 2


def test_the_exporters_own_light_check_still_catches_a_changed_file_or_key(bundles, tmp_path):
    """A large export checks only signatures and digests in process (clinic-verify walks the rows):
    same summary when intact, and any flipped byte in any file, or another key, is still refused."""
    original, key = bundles["csv-full"]
    full = verifier.verify(str(original), None, {key}, set())
    assert verifier.verify(str(original), None, {key}, set(), walk=False) == full
    with pytest.raises(verifier.Altered, match="not the pinned one"):
        verifier.verify(
            str(original), None, {Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()}, set(), walk=False
        )
    for n, f in enumerate(sorted(original.parent.glob(original.name + "*"))):
        work = tmp_path / str(n)
        work.mkdir()
        path, _ = copy((original, key), work)
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x04
        (work / f.name).write_bytes(bytes(data))
        with pytest.raises(verifier.Altered):
            verifier.verify(str(path), None, {key}, set(), walk=False)
