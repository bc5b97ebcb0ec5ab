"""POST /exports and its results through the API, the CLI, scope and the accounting of disclosures."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from sqlalchemy import select

from clinic.exports import verifier
from tests.exports.conftest import period


def _export(shop, headers=None, **body):
    since, until = period()
    payload = {
        "kind": "dispensing-log",
        "format": "csv",
        "since": since,
        "until": until,
        "location_id": shop.location_id,
    }
    payload.update(body)
    return shop.client.post("/api/v1/exports", json=payload, headers=headers or shop.auditor_h)


def _download(shop, path: str) -> bytes:
    resp = shop.client.get(path, headers=shop.auditor_h)
    try:
        assert resp.status_code == 200, path
        return resp.data
    finally:
        resp.close()  # send_file's open file


def _verify(path: Path, key: str) -> tuple[int, str]:
    out = io.StringIO()
    old, sys.stdout = sys.stdout, out
    try:
        return verifier.main([str(path), "--public-key", key]), out.getvalue()
    finally:
        sys.stdout = old


def test_an_auditor_exports_and_verifies_offline(shop, tmp_path):
    resp = _export(shop)
    assert resp.status_code == 202, resp.json
    job = shop.client.get(f"/api/v1/exports/{resp.json['id']}", headers=shop.auditor_h).json
    assert job["status"] == "done" and job["rows"] == 2 and job["rows_done"] == job["rows_total"] > 0
    assert job["verification"].startswith("OK:")
    key = shop.client.get("/api/v1/exports/signing-key", headers=shop.auditor_h).json
    assert key["fingerprint"] == verifier.fingerprint(key["public_key"])
    body = _download(shop, f"/api/v1/exports/{job['id']}/file")
    manifest = _download(shop, f"/api/v1/exports/{job['id']}/manifest")
    target = tmp_path / "log.csv"
    target.write_bytes(body)
    Path(str(target) + ".manifest.json").write_bytes(manifest)
    for f in json.loads(manifest)["files"]:
        if f["role"] == "left-out":
            (tmp_path / f["name"]).write_bytes(_download(shop, f"/api/v1/exports/{job['id']}/files/{f['name']}"))
    code, out = _verify(target, key["public_key"])
    assert code == 0, out
    assert shop.client.get(f"/api/v1/exports/{job['id']}/files/..%2Fsecret", headers=shop.auditor_h).status_code == 404


def test_one_location_only_and_nothing_from_another(shop):
    job = _export(shop, kind="ledger", format="jsonl", profile="no-phi").json
    assert job["status"] == "done", job
    with shop.app.app_context():
        from clinic.exports import service

        path = service.export_dir() / str(job["id"]) / f"ledger-{job['id']}.jsonl"
    records = [json.loads(line)["record"] for line in path.read_text().splitlines()]
    assert records and {r["location_id"] for r in records} == {shop.location_id}
    assert shop.seqs["main"][0] in {r["seq"] for r in records}
    missing = _export(shop, location_id=None)
    assert missing.status_code == 422 and "location_id" in missing.json["errors"]


def test_who_may_export(shop):
    assert _export(shop, headers=shop.nurse_h).status_code == 403
    job = _export(shop).json
    # another auditor does not see this auditor's export
    from tests.conftest import bearer
    from tests.exports.conftest import new_user

    other = bearer(shop.app, new_user(shop.app, "auditor"))
    assert shop.client.get(f"/api/v1/exports/{job['id']}", headers=other).status_code == 404
    assert shop.client.get(f"/api/v1/exports/{job['id']}", headers=shop.admin_h).status_code == 200


def test_bad_requests_write_nothing(shop):
    with shop.app.app_context():
        from sqlalchemy import func

        from clinic.exports.models import Export
        from clinic.extensions import db

        before = db.session.scalar(select(func.count()).select_from(Export))
    for body in (
        {"kind": "everything"},
        {"format": "xls"},
        {"since": "yesterday"},
        {"until": "2020-01-01T00:00:00"},  # no offset
        {"since": "9999-12-31", "until": "9999-12-31"},
        {"location_id": 10**9},
        {"purpose_kind": "health_oversight"},  # an outside agency needs a recipient and a purpose
        {"profile": "everything"},
    ):
        resp = _export(shop, **body)
        assert 400 <= resp.status_code < 500, (body, resp.status_code)
        assert resp.headers["Content-Type"].startswith("application/problem+json"), body
    with shop.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Export)) == before


def test_an_outside_agency_export_is_accounted_per_patient(shop):
    resp = _export(
        shop,
        recipient="DEA Diversion Field Office",
        recipient_address="1 Federal Plaza",
        purpose_kind="health_oversight",
        purpose="Inspection under 21 CFR 1316.03",
    )
    assert resp.status_code == 202 and resp.json["status"] == "done", resp.json
    since, until = period()
    ada, zola = shop.patients
    listed = shop.client.get(
        f"/api/v1/patients/{ada}/disclosures", query_string={"since": since, "until": until}, headers=shop.admin_h
    )
    assert listed.status_code == 200, listed.json
    mine = [d for d in listed.json["items"] if d["export_id"] == resp.json["id"]]
    assert len(mine) == 1
    assert mine[0]["recipient"] == "DEA Diversion Field Office" and "Inspection" in mine[0]["purpose"]
    # a no-PHI export to the same agency discloses no patient; an operations export is never listed
    bare = _export(shop, profile="no-phi", recipient="DEA", purpose_kind="health_oversight", purpose="x").json
    ops = _export(shop).json
    again = shop.client.get(
        f"/api/v1/patients/{zola}/disclosures", query_string={"since": since, "until": until}, headers=shop.admin_h
    ).json["items"]
    assert {d["export_id"] for d in again} & {bare["id"], ops["id"]} == set()
    assert (
        shop.client.get(
            f"/api/v1/patients/{ada}/disclosures", query_string={"since": since, "until": until}, headers=shop.auditor_h
        ).status_code
        == 403
    )


def test_every_export_is_in_the_access_log(shop):
    job = _export(shop, format="jsonl").json
    with shop.app.app_context():
        from clinic.audit.models import AccessEvent
        from clinic.extensions import db

        # the object names are a comma-separated list: "export:3" must not match "export:31", and the
        # shared test database holds other tests' requests for the same id
        rows = db.session.scalars(select(AccessEvent).where(AccessEvent.object.contains(f"export:{job['id']}"))).all()
        named = [r for r in rows if f"export:{job['id']}" in r.object.split(",") and r.action.endswith("Exports")]
        assert [(r.user_id, r.action) for r in named] == [(shop.auditor.id, "POST exports_api.Exports")]


def test_the_cli_writes_a_verified_bundle_and_a_pdf(shop, tmp_path):
    from clinic.core import signing

    since, until = (p[:10] for p in period())
    for fmt in ("csv", "pdf"):
        out = tmp_path / f"log.{fmt}"
        result = shop.app.test_cli_runner().invoke(
            args=[
                "export",
                "dispensing-log",
                "--since",
                since,
                "--until",
                until,
                "--location",
                str(shop.location_id),
                "--format",
                fmt,
                "-o",
                str(out),
            ]
        )
        assert result.exit_code == 0, result.output
        with shop.app.app_context():
            key = signing.public_key_hex()
        code, text = _verify(out, key)
        assert code == 0, text
    assert out.read_bytes().startswith(b"%PDF")
    refused = shop.app.test_cli_runner().invoke(
        args=["export", "dispensing-log", "--since", since, "--until", until, "--format", "csv", "-o", str(out)]
    )
    assert refused.exit_code == 1 and "location_id" in refused.output


def test_a_large_export_goes_to_a_worker_and_reports_progress(shop):
    """Past the inline size the request only queues the export (202, queued); the task body, as the
    worker runs it, commits its progress per batch and finishes with the verified bundle."""
    from clinic.exports import tasks

    shop.app.config["EXPORT_INLINE_ROWS"] = 0
    try:
        queued = _export(shop, kind="ledger", format="jsonl")
    finally:
        shop.app.config["EXPORT_INLINE_ROWS"] = 5000
    assert queued.status_code == 202 and queued.json["status"] == "queued", queued.json
    with shop.app.app_context():
        assert tasks.run_export.run(queued.json["id"]) == "done"
        assert tasks.run_export.run(queued.json["id"]) == "skipped"  # a redelivery does nothing twice
    done = shop.client.get(f"/api/v1/exports/{queued.json['id']}", headers=shop.auditor_h).json
    assert done["status"] == "done" and done["rows_done"] == done["rows_total"] > 0
    assert done["verification"].startswith("OK:")


def test_two_exports_at_once_both_finish_verified(shop):
    """Both sign the same new chain head: on PostgreSQL one checkpoint wins, the other export takes it."""
    import threading

    from tests.conftest import Client

    vial = shop.client.get(
        "/api/v1/inventory/ledger",
        query_string={"location_id": shop.location_id, "kind": "receipt"},
        headers=shop.nurse_h,
    ).json["items"][0]["container_id"]
    shop.post("/inventory/administrations", {"container_id": vial, "patient_id": shop.patients[0], "quantity_mg": "1"})
    shop.app.test_client_class = Client
    answers: list = []
    start = threading.Barrier(2)

    def one() -> None:
        client = shop.app.test_client()
        since, until = period()
        start.wait()
        answers.append(client.post("/api/v1/exports", headers=shop.auditor_h, json={
            "kind": "dispensing-log", "format": "csv", "since": since, "until": until,
            "location_id": shop.location_id,
        }))  # fmt: skip

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202, 202], [a.json for a in answers]
    assert all(a.json["status"] == "done" and a.json["verification"].startswith("OK:") for a in answers)
