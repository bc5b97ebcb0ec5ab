"""clinic-verify's parallel walk of a large CSV export (issue 13): forced here on the small bundles
(every row its own byte range, two workers), it must prove the untouched bundles intact by itself
and, on every mutation, give exactly the answer of the one-process walk."""

from __future__ import annotations

import pytest

from clinic.exports import verifier
from tests.exports.test_verify import CSV_MUTATIONS, _write, copy, csv_rows, run, write_csv


@pytest.fixture(scope="module")
def bundles(shop, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundles")
    return {
        "csv-full": _write(shop, tmp, "dispensing-log", "csv", "full"),
        "waste-csv": _write(shop, tmp, "waste-log", "csv", "dea-inspection"),
        **{f"{kind}-{profile}": _write(shop, tmp, kind, "csv", profile) for kind, profile in KINDS},
    }


#: every ledger kind once, in a profile each: the cells each kind's checker compares
KINDS = [
    ("receiving-log", "no-phi"),
    ("loss-log", "full"),
    ("disposal-log", "dea-inspection"),
    ("inventory", "full"),
    ("ledger", "full"),
    ("ledger", "no-phi"),
]


@pytest.fixture
def parallel(monkeypatch):
    monkeypatch.setattr(verifier, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(verifier, "CHUNK_BYTES", 1)  # a range per row: every cut is a record end
    monkeypatch.setattr(verifier, "_workers", lambda path: 2)
    verifier.PARALLEL_WALKS.clear()
    return verifier.PARALLEL_WALKS


def _sequential(monkeypatch, path, key):
    with monkeypatch.context() as m:
        m.setattr(verifier, "_workers", lambda path: 1)
        return run(path, key)


@pytest.mark.parametrize("name", ["csv-full", "waste-csv", *(f"{k}-{p}" for k, p in KINDS)])
def test_untouched_csv_exports_are_proven_in_parallel(bundles, parallel, name):
    path, key = bundles[name]
    code, out = run(path, key)
    assert code == 0 and out.startswith("OK:"), out
    assert parallel == [str(path)]


def test_larger_ranges_are_proven_too(bundles, parallel, monkeypatch):
    monkeypatch.setattr(verifier, "CHUNK_BYTES", 700)  # some ranges hold two rows: runs inside a range
    path, key = bundles["csv-full"]
    assert run(path, key)[0] == 0 and parallel == [str(path)]


@pytest.mark.parametrize("mutation", list(CSV_MUTATIONS))
def test_mutations_get_the_one_process_answer(bundles, parallel, monkeypatch, tmp_path, mutation):
    path, key = copy(bundles["csv-full"], tmp_path)
    rows = csv_rows(path)
    change, named = CSV_MUTATIONS[mutation]
    change(rows)
    write_csv(path, rows)
    code, out = run(path, key)
    assert code == 1 and named in out, out
    assert (code, out) == _sequential(monkeypatch, path, key)
    assert parallel == []


def test_every_flipped_byte_gets_the_one_process_answer(bundles, parallel, monkeypatch, tmp_path):
    path, key = copy(bundles["waste-csv"], tmp_path)
    data = path.read_bytes()
    for at in range(0, len(data), max(1, len(data) // 40)):
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :])
        code, out = run(path, key)
        assert code == 1, (at, out)
        assert (code, out) == _sequential(monkeypatch, path, key), at


def test_a_dropped_left_out_row_gets_the_one_process_answer(bundles, parallel, monkeypatch, tmp_path):
    path, key = copy(bundles["waste-csv"], tmp_path)
    left = path.with_name(path.name + ".left-out.jsonl")
    lines = left.read_text().splitlines(keepends=True)
    left.write_text("".join(lines[:1] + lines[2:]))
    code, out = run(path, key)
    assert code == 1 and (code, out) == _sequential(monkeypatch, path, key), out
