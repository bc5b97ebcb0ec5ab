"""The baseline for users_me: a bare Flask app that answers GET /api/v1/users/me with a fixed body.

No database, no token check, no access log, no extensions: what Flask and gunicorn alone cost.
The body is the JSON that clinic's endpoint returned (``BENCH_BARE_BODY``), serialised per
request with Flask's own JSON provider, as clinic's endpoint is.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, Response, jsonify

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the order clinic's body came in

_BODY: dict[str, Any] = json.loads(os.environ.get("BENCH_BARE_BODY") or "{}")


@app.get("/api/v1/users/me")
def me() -> Response:
    return jsonify(_BODY)
