"""export: a dispensing log to CSV through ``clinic export`` vs PostgreSQL's own COPY, and
``clinic-verify`` on that export vs plain hashlib over the same rows (issue 13).

1. A fresh PostgreSQL database, ``clinic db upgrade``; a location, a drug, a patient, an initial
   inventory and a receipt of vials through the API (in process, bearer tokens).
2. N administrations appended as the service would write them (form 2: salted PHI commitments,
   the committed record kept beside its hash, ``clinic.inventory.chain``), streamed into
   ``ledger_entries`` with COPY in one transaction with the vials' balances and the chain head, so
   the chain is the real thing.
3. Ours: ``clinic export dispensing-log ... --format csv`` as a subprocess: rows per second
   (wall time, app start included) and its peak RSS (``wait4``). Baseline: ``COPY (SELECT ...
   the same rows) TO STDOUT WITH CSV`` through psycopg into a file.
4. ``clinic-verify`` on the bundle (subprocess, the signing key pinned) vs SHA-256 of each CSV
   line with hashlib in this process: rows per second, and ours' seconds against the 5 s target.

Figures: ``export.csv_rps`` (target ratio >= 0.5), ``export.peak_mb`` (baseline = the 150 MB
target: ratio < 1 meets it), ``export.verify_rps`` (target ratio >= 0.5), ``export.verify_s``
(baseline = the 5 s target). Size: BENCH_EXPORT_ROWS (default 1,000,000), or
``python -m bench.export 2000``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import REPO, BenchmarkError, Figure, note, postgres_database, run_command, tool

ROWS = int(os.environ.get("BENCH_EXPORT_ROWS", "1000000"))
#: the password rules refuse a guessable one
PASSWORD = f"pw-{uuid.uuid4().hex}"


def _timed(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and stdout of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not all children's
        seconds = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        said, complaint = out.read(), err.read()
    if code != 0:
        raise BenchmarkError(f"{' '.join(args[:3])} exited {code}: {(complaint or said)[-1500:]}")
    return seconds, usage.ru_maxrss / 1024, said


def _seed(url: str, instance: Path, rows: int) -> dict[str, Any]:
    os.environ["DATABASE_URL"], os.environ["CLINIC_INSTANCE_PATH"] = url, str(instance)
    from clinic import create_app
    from clinic.auth import service as auth
    from clinic.core.tx import commit
    from clinic.extensions import db

    app = create_app()
    tokens = {}
    ids = {}
    with app.app_context():
        for role in ("admin", "nurse", "witness"):
            user = auth.create_user(
                actor=None,
                email=f"{role}@bench.test",
                name=f"Bench {role}",
                role="admin" if role == "admin" else "nurse",
                password=PASSWORD,
                license_type=None if role == "admin" else "RN",
                license_number=None if role == "admin" else f"RN-{role}",
            )
            commit()
            ids[role] = user.id
            tokens[role] = {"Authorization": f"Bearer {auth.issue_token(user=user)[0]}"}
            commit()
    client = app.test_client()

    def post(path: str, body: dict[str, Any], who: str = "nurse") -> Any:
        resp = client.post(f"/api/v1{path}", json=body, headers=tokens[who], base_url="https://localhost")
        if resp.status_code not in (200, 201):
            raise BenchmarkError(f"{path}: {resp.status_code} {resp.get_data(as_text=True)[:300]}")
        return resp.json

    loc = post("/locations", {"name": "Bench Clinic", "address": "1 Bench St", "dea_registration": "AB1234563",
                              "timezone": "UTC"}, "admin")["id"]  # fmt: skip
    for role in ("nurse", "witness"):  # they work at the new location (SYS-11)
        client.put(
            f"/api/v1/locations/{loc}/members/{ids[role]}", headers=tokens["admin"], base_url="https://localhost"
        )
    site = post(f"/locations/{loc}/storage-sites", {"name": "Safe"}, "admin")["id"]
    drug = post("/drugs", {"name": "Ketamine HCl 50 mg/mL", "ndc": "12345-678-90", "schedule": "CIII",
                           "form": "vial", "unit": "mL", "mg_per_unit": "50", "units_per_container": "10"},
                "admin")  # fmt: skip
    witness = {"witness_email": "witness@bench.test", "witness_password": PASSWORD}
    post(
        "/inventory/counts",
        {"location_id": loc, "kind": "initial", "business_hours": "opening", "lines": [], **witness},
    )
    patient = post("/patients", {"first_name": "Bea", "last_name": "Bench", "date_of_birth": "1970-01-01",
                                 "address": "2 Bench Rd", "timezone": "UTC"})["id"]  # fmt: skip
    per_vial = 500_000 // 100  # 0.1 mg draws from 500 mg vials
    vials = -(-rows // per_vial)
    containers = []
    while len(containers) < vials:
        n = min(100, vials - len(containers))
        containers += [c["id"] for c in post("/inventory/receipts", {
            "storage_site_id": site, "drug_id": drug["id"], "lot_number": "BENCH1", "expires_on": "2099-01-01",
            "container_count": n, "supplier_name": "Acme", "supplier_address": "1 Supply Rd",
            "supplier_dea_registration": "AB1234563", "invoice_number": f"INV-{uuid.uuid4().hex[:8]}",
        })["containers"]]  # fmt: skip
    with app.app_context():
        _append(app, db, loc, drug, patient, containers, rows)
    return {"location_id": loc, "since": datetime.now(UTC).date() - timedelta(days=1)}


def _append(app, db, loc: int, drug: dict[str, Any], patient: int, containers: list[int], rows: int) -> None:
    """The administrations, hashed and with the committed record kept exactly as
    ``clinic.inventory.ledger.append`` does, in one COPY."""
    import json

    from clinic.inventory.chain import committed_record, phi_paths, record_body_hash

    conn = db.engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.execute("SELECT head_seq, head_hash FROM ledger_chains WHERE location_id = %s FOR UPDATE", (loc,))
        seq, prev = cur.fetchone()
        cur.execute("SELECT id FROM users WHERE email = 'nurse@bench.test'")
        (actor,) = cur.fetchone()
        balance = dict.fromkeys(containers, 500_000)
        start = datetime.now(UTC)  # after the receipts: a chain is recorded in order
        cols = ("location_id, seq, kind, container_id, drug_id, delta_ug, balance_after_ug, patient_id, actor_id, "
                "occurred_at, recorded_at, details, prev_hash, hash, phi_salts, committed_record")  # fmt: skip
        with cur.copy(f"COPY ledger_entries ({cols}) FROM STDIN") as copy:
            for i in range(rows):
                c = containers[i // (500_000 // 100)]
                balance[c] -= 100
                at = start + timedelta(microseconds=i)
                fields = {
                    "location_id": loc, "seq": seq + 1, "kind": "administration", "container_id": c,
                    "drug_id": drug["id"], "delta_ug": -100, "balance_after_ug": balance[c], "patient_id": patient,
                    "appointment_id": None, "actor_id": actor, "witness_id": None, "second_witness_id": None,
                    "corrects_seq": None, "occurred_at": at, "recorded_at": at, "reason": None,
                    "details": {"patient_name": "Bea Bench", "patient_address": "2 Bench Rd",
                                "drug_name": drug["name"], "ndc": drug["ndc"], "lot_number": "BENCH1"},
                    "prev_hash": prev,
                }  # fmt: skip
                fields["phi_salts"] = {p: secrets.token_hex(16) for p in phi_paths(fields)}
                record = committed_record(fields)  # kept with the entry, as the append keeps it (0021)
                h = record_body_hash(record, prev)
                details, salts = json.dumps(fields["details"]), json.dumps(fields["phi_salts"])
                row = (loc, seq + 1, "administration", c, drug["id"], -100, balance[c], patient, actor, at, at)
                copy.write_row((*row, details, prev, h, salts, record.decode()))
                seq, prev = seq + 1, h
        for c, b in balance.items():
            cur.execute("UPDATE containers SET balance_ug = %s, status = 'open' WHERE id = %s", (b, c))
        cur.execute("UPDATE ledger_chains SET head_seq = %s, head_hash = %s WHERE location_id = %s", (seq, prev, loc))
        conn.commit()
    finally:
        conn.close()


def main(rows: int = ROWS) -> list[Figure]:
    clinic, verify = tool("clinic"), tool("clinic-verify")
    with postgres_database("clinic_bench_export") as url, tempfile.TemporaryDirectory() as tmp:
        instance = Path(tmp) / "instance"
        instance.mkdir()
        env = {**os.environ, "DATABASE_URL": url, "CLINIC_INSTANCE_PATH": str(instance)}
        run_command([clinic, "db", "upgrade"], env=env, timeout=300)
        note(f"export: seeding {rows} administrations")
        seeded = _seed(url, instance, rows)
        since = seeded["since"].isoformat()
        until = (seeded["since"] + timedelta(days=2)).isoformat()
        out = Path(tmp) / "dispensing.csv"
        loc = str(seeded["location_id"])
        args = [clinic, "export", "dispensing-log", "--since", since, "--until", until,
                "--location", loc, "--format", "csv", "--profile", "full", "-o", str(out)]  # fmt: skip
        ours_s, peak_mb, said = _timed(args, env)
        note(f"export: {said.strip()[:200]}")

        import psycopg

        sql = (
            "COPY (SELECT seq, occurred_at, recorded_at, container_id, delta_ug, balance_after_ug, patient_id, "
            f"actor_id, details, prev_hash, hash, phi_salts FROM ledger_entries WHERE location_id = {loc} "
            "AND kind = 'administration' ORDER BY seq) TO STDOUT WITH CSV HEADER"
        )
        start = time.perf_counter()
        copied = 0
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            (Path(tmp) / "copy.csv").open("wb") as fh,
            cur.copy(sql) as copy,
        ):
            for block in copy:
                fh.write(block)
                copied += 1
        base_s = time.perf_counter() - start

        key = str(instance / "signing_key.pem")
        verify_s, _, said = _timed([verify, str(out), "--public-key", key], env)
        note(f"export: {said.strip()[:200]}")
        if os.environ.get("BENCH_EXPORT_KEEP"):  # for profiling: the bundle outlives the run
            import shutil

            for f in out.parent.glob(out.name + "*"):
                shutil.copy(f, os.environ["BENCH_EXPORT_KEEP"])
        start = time.perf_counter()
        with out.open("rb") as fh:
            for line in fh:
                hashlib.sha256(line).digest()
        hash_s = time.perf_counter() - start
    return [
        Figure("export.csv_rps", rows / ours_s, rows / base_s),
        Figure("export.peak_mb", peak_mb, 150.0),
        Figure("export.verify_rps", rows / verify_s, rows / hash_s),
        Figure("export.verify_s", verify_s, 5.0, decimals=2),
    ]


if __name__ == "__main__":
    for figure in main(int(sys.argv[1]) if len(sys.argv) > 1 else ROWS):
        print(figure.line(), flush=True)
