"""Upgrades with data (issue 14), on SQLite and PostgreSQL: a clinic's database as the last release
left it is upgraded to whatever head is, and nothing is lost or altered.

The release's data is fixtures/release-<revision>.json, written by that release's own code through
its API (build_release_fixture.py, pinned to the release). It is loaded into a database migrated to
the release's revision (through that schema, not today's models), then ``alembic upgrade head`` runs
every migration since, and the upgraded clinic must: verify every chain with the same heads; hold
every table's rows; read every row through today's models; give every answer the release's API
gave (new fields allowed); sign in with the release's password; and carry on appending to the same
chains. A new migration that loses, rewrites or breaks the reading of a release's rows fails here.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, inspect, select, text

from clinic.core import signing
from clinic.extensions import db
from clinic.inventory import integrity
from clinic.inventory.models import LedgerEntry
from tests.clock import in_years
from tests.conftest import Account, bearer, migrate
from tests.ops import release_data
from tests.ops.conftest import fresh_app

RELEASE = Path(__file__).resolve().parent / "fixtures" / "release-0010.json"


@cache
def release() -> dict[str, Any]:
    return json.loads(RELEASE.read_text())  # type: ignore[no-any-return]


def load_release_and_upgrade(app: Flask) -> None:
    """Migrate ``app``'s empty database to the release's revision, load its rows, upgrade to head."""
    data = release()
    migrate(app, data["revision"])
    with app.app_context(), db.engine.begin() as conn:
        release_data.load(conn, data["tables"])
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == data["revision"]
    migrate(app, "head")


def tokens(app: Flask) -> dict[str, dict[str, str]]:
    logins = release()["logins"]
    return {role: bearer(app, Account(login["id"], login["email"], "", role, None)) for role, login in logins.items()}


def test_the_fixture_is_the_releases_and_sizeable() -> None:
    data = release()
    assert data["built_by"] == "tests/ops/build_release_fixture.py"
    for table in ("ledger_entries", "ledger_checkpoints", "access_events", "audit_events", "visit_doses"):
        assert data["tables"][table]["rows"], table
    assert len(data["reads"]) > 20


def release_key() -> str:
    """The key the release signed its checkpoints with: the clinic keeps it across the upgrade, and
    verification pins it (SYS-05) instead of trusting the key each checkpoint row names."""
    table = release()["tables"]["ledger_checkpoints"]
    column = table["columns"].index("public_key")
    (key,) = {row[column] for row in table["rows"]}
    return str(key)


def test_a_release_database_upgrades_to_head_with_its_data(backend: str, tmp_path: Path) -> None:
    data = release()
    clinic = data["clinic"]
    with fresh_app(backend, "upgrade") as app:
        load_release_and_upgrade(app)
        with app.app_context():
            present = set(inspect(db.engine).get_table_names())
            # The chains: intact, with the release's heads and checkpoints.
            assert not integrity.verify_all()[0].ok  # no pinned key: the rows' own keys prove nothing
            reports = integrity.verify_all(public_keys=(release_key(),))
            # Migration 0013 re-anchors each chain with one linked entry (HIP-15): history unchanged.
            assert [(r.location_id, r.entries, r.ok) for r in reports] == [
                (c["location_id"], c["entries"] + 1, True) for c in data["chains"]
            ]
            for c in data["chains"]:
                anchor = db.session.scalars(
                    select(LedgerEntry).filter_by(location_id=c["location_id"], seq=c["entries"] + 1)
                ).one()
                assert anchor.prev_hash == c["head_hash"]
                assert anchor.details["reanchor"]["through_seq"] == c["entries"]
            # Every table the release had still holds its rows (unless a migration removed the table).
            added = {"ledger_entries": len(data["chains"])}
            for table, rows in data["tables"].items():
                if table in present:
                    count = db.session.scalar(select(func.count()).select_from(text(table)))
                    assert count == len(rows["rows"]) + added.get(table, 0), table
            # Every row reads through today's models (enums, types, relationships).
            for mapper in db.Model.registry.mappers:
                db.session.scalars(select(mapper.class_)).all()
            db.session.rollback()

        client = app.test_client()
        headers = tokens(app)
        for read in data["reads"]:
            resp = client.get(read["path"], query_string=read["query"], headers=headers[read["role"]])
            assert resp.status_code == 200, (read["path"], resp.json)
            found = resp.json
            if read["path"] == "/api/v1/inventory/ledger":  # less the re-anchoring entry 0013 added
                found = {**found, "items": [i for i in found["items"] if "reanchor" not in (i.get("details") or {})]}
            assert release_data.contains(found, read["answer"], read["path"]) == []

        nurse = data["logins"]["nurse"]
        signed_in = client.post("/api/v1/auth/tokens", json={"email": nurse["email"], "password": nurse["password"]})
        assert signed_in.status_code == 201, signed_in.json

        # The clinic carries on: new entries continue the release's chain.
        received = client.post(
            "/api/v1/inventory/receipts",
            headers=headers["nurse"],
            json={
                "storage_site_id": clinic["safe_id"],
                "drug_id": clinic["vial_drug_id"],
                "lot_number": "AFTER-UPGRADE",
                "expires_on": in_years(2).isoformat(),
                "container_count": 1,
                "supplier_name": "Acme Wholesale",
                "supplier_address": "1 Supply Rd, Newark NJ",
                "supplier_dea_registration": "AB1234563",
                "invoice_number": "INV-UPGRADE",
            },
        )
        assert received.status_code == 201, received.json
        given = client.post(
            "/api/v1/inventory/administrations",
            headers=headers["nurse"],
            json={
                "container_id": received.json["containers"][0]["id"],
                "patient_id": clinic["patient_id"],
                "quantity_mg": "10",
            },
        )
        assert given.status_code == 201, given.json
        (chain,) = [c for c in data["chains"] if c["location_id"] == clinic["location_id"]]
        assert given.json["seq"] == chain["entries"] + 3  # after the re-anchoring entry and the receipt
        with app.app_context():
            assert integrity.sign_checkpoints()
            db.session.commit()
            own = signing.public_key_of_file()
            assert own is not None
            assert all(r.ok for r in integrity.verify_all(public_keys=(release_key(), own)))
            # The release's entries (form 1, PHI hashed in the clear) verify offline with their PHI
            # and, through the re-anchoring entry, without it (HIP-15).
            from datetime import UTC, datetime, timedelta

            from clinic.core.time import utcnow
            from clinic.exports import verifier, writer

            for profile in ("full", "no-phi"):
                out = tmp_path / f"ledger-{profile}.jsonl"
                spec = writer.Spec(
                    kind="ledger", file_format="jsonl", profile=profile, location_id=clinic["location_id"],
                    since=datetime(2000, 1, 1, tzinfo=UTC), until=utcnow() + timedelta(days=1),
                )  # fmt: skip
                writer.write(spec, out)
                db.session.commit()
                lines = out.read_text().splitlines()
                assert json.loads(lines[0])["record"]["v"] == 1
                assert verifier.verify(str(out), None, {own}, set()).startswith("ledger:")
            # A CSV built by PostgreSQL's COPY (form-1 entries: their salts in ledger_form1_salts) is
            # byte for byte the Python writer's, and verifies
            from unittest import mock

            for kind, profile in (("dispensing-log", "full"), ("dispensing-log", "dea-inspection"),
                                  ("dispensing-log", "no-phi"), ("ledger", "full")):  # fmt: skip
                written, taken = {}, []
                real = writer._copy_csv

                def copy(*args, real=real, taken=taken):
                    taken.append(real(*args))
                    return taken[-1]

                for way in ("copy", "python"):
                    out = tmp_path / way / f"{kind}-{profile}.csv"
                    spec = writer.Spec(
                        kind=kind, file_format="csv", profile=profile, location_id=clinic["location_id"],
                        since=datetime(2000, 1, 1, tzinfo=UTC), until=utcnow() + timedelta(days=1),
                    )  # fmt: skip
                    python_only = mock.patch.object(writer, "_copy_csv", return_value=None)
                    with python_only if way == "python" else mock.patch.object(writer, "_copy_csv", side_effect=copy):
                        writer.write(spec, out)
                    db.session.commit()
                    written[way] = [
                        p.read_bytes() for p in sorted(out.parent.glob(out.name + "*")) if "manifest" not in p.name
                    ]
                    assert verifier.verify(str(out), None, {own}, set()).startswith(f"{kind}:")
                assert written["copy"] == written["python"], (kind, profile)
                # the dispensing log's form-1 rows are COPY's own; the whole ledger's counts fall back
                assert (taken[0] is not None) == (backend == "postgresql" and kind != "ledger"), (kind, profile)
