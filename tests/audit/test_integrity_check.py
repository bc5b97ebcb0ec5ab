"""The daily integrity check (SYS-05, HIP-02): it verifies every chain and the sealed logs, stores
the result, alerts the admins on a break, and the auditor's page shows the last result."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask, render_template
from sqlalchemy import func, select

from clinic.audit import integrity, tasks
from clinic.audit.models import AccessEvent, IntegrityCheck
from clinic.extensions import db
from tests.audit.test_seals import raw, write_access, write_audit
from tests.conftest import temp_app
from tests.inventory.conftest import clinic  # noqa: F401  (the fixture)


@pytest.fixture(scope="module")
def iapp(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    log = tmp_path_factory.mktemp("integrity") / "checkpoints.jsonl"
    with temp_app(backend, "integrity", SEAL_WAIT_SECONDS=0.3, CHECKPOINT_LOG=str(log)) as application:
        with application.app_context():
            from clinic.auth.service import create_user
            from clinic.core.tx import commit
            from clinic.locations.service import create_location

            admin = create_user(
                actor=None, email="admin@integrity.test", name="Admin", role="admin", password=f"pw-{uuid.uuid4().int}"
            )
            create_location(
                actor=admin, name="Main", address="1 Main St", dea_registration="AI1234563", timezone="America/Chicago"
            )
            commit()
        yield application


def notices(app: Flask) -> list[str]:
    from clinic.reminders.models import Notice

    with app.app_context():
        return list(
            db.session.scalars(select(Notice.body).where(Notice.kind == "integrity_break", Notice.role == "admin"))
        )


def partial(app: Flask) -> str:
    with app.test_request_context():
        return render_template("audit/_integrity.html")


def test_the_check_stores_its_result_and_alerts_on_a_break(iapp, backend):
    assert "No integrity check has run yet" in partial(iapp)
    write_access(iapp, 3)
    write_audit(iapp, 2)
    with iapp.app_context():
        assert tasks.seal_logs() >= 2  # the beat task's body: one seal per stream at least
        assert tasks.integrity_check() is True  # the beat task's body, as a worker runs it
        last = integrity.last_result()
        assert last["ok"] and last["problems"] == [] and last["summary"]["chains"] == 1
    assert notices(iapp) == []
    assert "Intact." in partial(iapp)

    with iapp.app_context():
        row = db.session.scalar(select(IntegrityCheck.id))
        first_access = db.session.scalar(select(func.min(AccessEvent.id)))
    assert row
    raw(
        iapp,
        backend,
        "access_events",
        f"UPDATE access_events SET client_addr = '203.0.113.9' WHERE id = {first_access}",
    )
    try:
        with iapp.app_context():
            assert tasks.integrity_check() is False
            last = integrity.last_result()
        assert not last["ok"] and any("access log seal 1" in p and "edited" in p for p in last["problems"])
        (body,) = notices(iapp)
        assert "access log seal 1" in body
        html = partial(iapp)
        assert "Broken." in html and "a row was edited" in html
    finally:
        raw(
            iapp,
            backend,
            "access_events",
            "UPDATE access_events SET client_addr = '192.0.2.1' WHERE client_addr = '203.0.113.9'",
        )


def test_the_ledger_page_shows_the_last_check_to_an_auditor(clinic, login_as):  # noqa: F811
    auditor, _ = login_as("auditor")
    html = auditor.get(f"/inventory/ledger?location_id={clinic.location_id}").get_data(as_text=True)
    assert "Records integrity" in html
