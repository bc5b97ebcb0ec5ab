"""Builds ``tests/ops/fixtures/release-<REVISION>.json``: a clinic's data as one release wrote it.

The upgrade-with-data test (test_upgrade_with_data.py) loads it into a database at that release's
schema revision and upgrades to whatever head is. The data must be what that release's own code
wrote, so this builder is pinned: it refuses to run unless the migrations' head is REVISION. Run it
in a checkout of the release (the commit where REVISION was the head), never later:

    git worktree add /tmp/release <release commit> && cd /tmp/release && make install
    .venv/bin/python -m tests.ops.build_release_fixture
    cp tests/ops/fixtures/release-<REVISION>.json <your checkout>/tests/ops/fixtures/

fixtures/release-0010.json was built so from commit 87f0484 (main, head 0010), this file and
tests/ops/{seed,release_data}.py copied in beside that release's code.

It seeds a clinic's day through the API (tests/ops/seed.py: receipts, an esketamine visit to
discharge, an IV dose with its witnessed waste, a PHQ-9, a shift count, a signed checkpoint, the
access log of all of it) on a frozen clock at DAY, then records every table's rows (as the schema
of that revision holds them), the chain heads, and the API's answers an upgrade must keep.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import time_machine

REVISION = "0010"
#: a Monday before the fixture was built, so anything written after an upgrade comes later in the chain
DAY = date(2026, 11, 30)
OUT = Path(__file__).resolve().parent / "fixtures" / f"release-{REVISION}.json"


def reads(ward: Any, admin: Any, patients: list[int], series: list[int]) -> list[dict[str, Any]]:
    """The GETs whose answers the upgraded database must still give (new fields allowed)."""
    loc = ward.location_id
    nurse = [
        ("/api/v1/inventory/ledger", {"location_id": loc, "limit": 500}),
        ("/api/v1/inventory/balances", {"location_id": loc}),
        ("/api/v1/inventory/loss-reports", {"location_id": loc}),
        ("/api/v1/drugs", {}),
        *[(f"/api/v1/inventory/containers/{c}", {}) for c in ward.extra["containers"]],
        *[(f"/api/v1/patients/{p}", {}) for p in patients],
        *[(f"/api/v1/patients/{p}/weights", {}) for p in patients],
        *[(f"/api/v1/patients/{p}/screenings", {}) for p in patients],
        *[(f"/api/v1/series/{s}", {}) for s in series],
        *[(f"/api/v1/series/{s}/outcomes", {"instrument": "phq9"}) for s in series],
        *[(f"/api/v1/appointments/{a}/visit", {}) for a in (ward.extra["esketamine"], ward.extra["iv"])],
        (f"/api/v1/appointments/{ward.extra['esketamine']}/monitoring-form", {}),
    ]
    everyone = [("/api/v1/users", {}), ("/api/v1/locations", {}), (f"/api/v1/locations/{loc}", {})]
    out = []
    for role, headers, paths in (("nurse", ward.nurse_h, nurse), ("admin", admin, everyone)):
        for path, query in paths:
            resp = ward.client.get(path, query_string=query, headers=headers)
            assert resp.status_code == 200, (path, resp.json)
            out.append({"role": role, "path": path, "query": query, "answer": resp.json})
    return out


def main() -> int:
    from alembic.script import ScriptDirectory
    from sqlalchemy import select

    from clinic.cli import alembic_config
    from clinic.extensions import db
    from clinic.inventory import integrity
    from clinic.inventory.models import Container
    from clinic.patients.models import Patient
    from clinic.scheduling.models import AppointmentSeries
    from tests.clock import at_local
    from tests.conftest import Client, bearer, database_url, dispose, make_app, migrate
    from tests.ops import release_data
    from tests.ops.seed import seed_clinic, user_maker
    from tests.visits.conftest import TZ

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if heads != [REVISION]:
        sys.stderr.write(f"this checkout's head is {heads}, not {REVISION}: build it in the release's checkout\n")
        return 1
    app = make_app(database_url("sqlite", f"release-{REVISION}"))
    app.test_client_class = Client
    try:
        migrate(app, REVISION)
        make_user = user_maker(app)
        admin = make_user("admin")
        ward = seed_clinic(app, app.test_client(), make_user, DAY)
        with app.app_context():
            ward.extra["containers"] = list(db.session.scalars(select(Container.id).order_by(Container.id)))
            patients = list(db.session.scalars(select(Patient.id).order_by(Patient.id)))
            series = list(db.session.scalars(select(AppointmentSeries.id).order_by(AppointmentSeries.id)))
            chains = [
                {"location_id": r.location_id, "entries": r.entries, "head_hash": r.head_hash}
                for r in integrity.verify_all()
            ]
            assert all(c["entries"] for c in chains)
            db.session.rollback()
        with time_machine.travel(at_local(DAY, "18:30", TZ), tick=False):  # the day's tokens are still valid
            answers = reads(ward, bearer(app, admin), patients, series)
        with app.app_context(), db.engine.connect() as conn:
            tables = release_data.dump(conn)
        fixture = {
            "revision": REVISION,
            "day": DAY.isoformat(),
            "built_by": "tests/ops/build_release_fixture.py",
            "logins": {
                "nurse": {"id": ward.nurse.id, "email": ward.nurse.email, "password": ward.nurse.password},
                "admin": {"id": admin.id, "email": admin.email},
            },
            "clinic": {
                "location_id": ward.location_id,
                "patient_id": ward.extra["patient_id"],
                "vial_drug_id": ward.vial_drug,
                "safe_id": ward.safe_id,
            },
            "chains": chains,
            "reads": answers,
            "tables": tables,
        }
    finally:
        dispose(app)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, separators=(",", ":"), sort_keys=True) + "\n")
    rows = sum(len(t["rows"]) for t in tables.values())
    sys.stdout.write(f"wrote {OUT}: {len(tables)} tables, {rows} rows, {len(answers)} API answers\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
