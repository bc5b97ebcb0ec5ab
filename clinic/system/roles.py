"""The login role web, worker and beat connect as on PostgreSQL: it owns nothing (HIP-04).

Only a table's owner (or a superuser) may switch its triggers off, so the append-only triggers hold
against the app's own credentials only while the app is not the owner. ``ensure_login_role``
creates that role (or resets its password) and refuses one that is a superuser or owns a table;
``clinic.core.appendonly.grant_app_role`` then grants it what the app needs.
"""

from __future__ import annotations

from sqlalchemy import text

from clinic.extensions import db


def ensure_login_role(role: str, password: str) -> bool:
    """Create ``role`` as a plain login role with ``password``, or set the password of the existing
    one; True when it was created. Raises when the role could switch the triggers off."""
    if db.engine.dialect.name != "postgresql":
        raise RuntimeError("roles exist on PostgreSQL only; on SQLite file permissions are the control")
    if not role.replace("_", "").isalnum():
        raise ValueError("role names are letters, digits and underscores")
    if not password:
        raise ValueError("the app role needs a password")
    with db.engine.begin() as conn:
        found = conn.execute(
            text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if found is not None and found[0]:
            raise RuntimeError(f"role {role} is a superuser or bypasses row security: it cannot be the app's role")
        if found is not None and role == conn.execute(text("SELECT current_user")).scalar_one():
            raise RuntimeError(f"role {role} is the role running the migrations: the app needs a role of its own")
        owned = conn.execute(
            text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = :r"),
            {"r": role},
        ).scalar_one()
        if owned:
            raise RuntimeError(f"role {role} owns {owned} tables or other relations: it could switch triggers off")
        verb = "ALTER" if found is not None else "CREATE"
        statement = conn.execute(
            text(
                "SELECT format('%s ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS PASSWORD %L', CAST(:verb AS text), CAST(:r AS text), CAST(:pw AS text))"
            ),
            {"verb": verb, "r": role, "pw": password},
        ).scalar_one()
        conn.exec_driver_sql(statement)
    return found is None
