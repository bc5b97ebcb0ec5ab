"""Review: the licence default applies to new users only; users made before it keep a number with no
type, so after the upgrade they still "silently cannot witness" (the very thing the default fixes)."""

from __future__ import annotations

from sqlalchemy import text

from tests.conftest import migrate, temp_app


def test_a_nurse_created_before_the_default_can_witness_after_the_upgrade(backend):
    from clinic.auth.models import User
    from clinic.extensions import db

    with temp_app(backend, "licence", migrated=False) as app:
        migrate(app, "0004")  # the schema as deployed before this series of commits
        with app.app_context(), db.engine.begin() as conn:
            # What the old create_user stored for `--license-number N-1` without --license-type.
            conn.execute(
                text(
                    "INSERT INTO users (email, name, role, password_hash, license_number, license_type, is_active,"
                    " created_at, password_changed_at)"
                    " VALUES ('old.nurse@test.clinic', 'Old Nurse', 'nurse', 'x', 'N-1', NULL, :t, :now, :now)"
                ),
                {"t": True, "now": "2026-01-01 00:00:00"},
            )
        migrate(app, "head")
        with app.app_context():
            user = db.session.scalar(db.select(User).where(User.email == "old.nurse@test.clinic"))
            assert (user.license_number, user.license_type, user.can_witness) == ("N-1", "RN", True)
