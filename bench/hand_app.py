"""The hand-written baseline for users_me: the same request, by hand, with Flask and a psycopg pool.

What clinic's ``GET /api/v1/users/me`` must do at the least, and nothing else: hash the bearer token,
one SELECT joining ``api_tokens`` and ``users`` (a live token of an active user), one INSERT of the
same ``access_events`` row clinic writes, one COMMIT, and the same JSON body (and X-Request-ID
header). No ORM, no extensions, no policy table, no log line: the limit for this shape of request.
A token that is not live is answered 401. ``DATABASE_URL`` names the database.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request
from psycopg_pool import ConnectionPool

from bench.harness import GUNICORN_THREADS

_USER = (
    "SELECT u.id, u.email, u.name, u.role, u.license_number, u.license_type, u.is_active"
    " FROM api_tokens t JOIN users u ON u.id = t.user_id"
    " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND t.expires_at > %s AND u.is_active"
)
_ACCESS = (
    "INSERT INTO access_events (occurred_at, user_id, action, object, outcome, status_code, client_addr, request_id)"
    " VALUES (%s, %s, 'GET auth_api.Me', '', 'allowed', 200, %s, %s)"
)
_FIELDS = ("id", "email", "name", "role", "license_number", "license_type", "is_active")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]  # the order clinic's schema gives

# One connection per handler thread, opened when the worker imports this module (no --preload).
pool = ConnectionPool(
    os.environ.get("DATABASE_URL", ""), min_size=GUNICORN_THREADS, max_size=GUNICORN_THREADS, open=False
)
if os.environ.get("DATABASE_URL"):
    pool.open()


@app.get("/api/v1/users/me")
def me() -> Any:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return {"status": 401}, 401
    digest = hashlib.sha256(raw.strip().encode()).hexdigest()
    supplied = request.headers.get("X-Request-ID", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    now = datetime.now(UTC)
    with pool.connection() as conn:
        row = conn.execute(_USER, (digest, now)).fetchone()
        if row is None:
            conn.rollback()
            return {"status": 401}, 401
        conn.execute(_ACCESS, (now, row[0], (request.remote_addr or "unknown")[:64], request_id))
        conn.commit()
    resp: Response = jsonify(dict(zip(_FIELDS, row, strict=True)))
    resp.headers["X-Request-ID"] = request_id
    return resp
