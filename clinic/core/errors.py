"""Domain errors and the one place that turns any error into an HTTP answer.

API requests get RFC 9457 ``application/problem+json``; pages get a friendly error page.
Neither ever carries a traceback or request data.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from flask import Flask, Response, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from clinic.core import tx

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class DomainError(Exception):
    """A broken rule. Subclasses set ``code``, ``http_status`` and ``title``."""

    code = "domain_error"
    http_status = 409
    title = "The request breaks a rule"

    def __init__(
        self, detail: str | None = None, *, errors: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}


class ValidationFailed(DomainError):
    code = "validation_failed"
    http_status = 422
    title = "The input is not valid"


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    http_status = 401
    title = "Authentication required"


class PermissionDenied(DomainError):
    code = "permission_denied"
    http_status = 403
    title = "You do not have permission to do this"


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    http_status = 409
    title = "The request conflicts with the current state"


class ServiceUnavailable(DomainError):
    code = "service_unavailable"
    http_status = 503
    title = "A backing service is unavailable; try again shortly"


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/health":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json", PROBLEM_JSON])
    return best in ("application/json", PROBLEM_JSON)


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    code: str | None = None,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:clinic-ops:problem:{code}" if code else "about:blank",
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = errors
    request_id = getattr(g, "request_id", None)
    if request_id:
        body["instance"] = f"urn:clinic-ops:request:{request_id}"
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = PROBLEM_JSON
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def _flatten_messages(messages: Any) -> dict[str, Any]:
    """webargs nests messages by location ({"json": {"field": [...]}}); clients want fields."""
    if not isinstance(messages, dict):
        return {"_schema": messages}
    flat: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def _render(
    status: int,
    title: str,
    detail: str | None,
    *,
    code: str | None = None,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    g.outcome_status = status
    if wants_json():
        return problem(status, title, detail, code=code, errors=errors, headers=headers)
    if status == 401:
        # Only a page can be returned to; after sign-in the browser follows `next` with GET.
        target = request.full_path.rstrip("?") if request.method in ("GET", "HEAD") else None
        return redirect(url_for("auth_ui.login", next=target))
    body = render_template("errors/error.html", status=status, title=title, detail=detail, errors=errors)
    return body, status, headers or {}


def handle_domain_error(exc: DomainError) -> Any:
    tx.discard()
    return _render(exc.http_status, exc.title, exc.detail, code=exc.code, errors=exc.errors, headers=exc.headers)


def handle_http_exception(exc: HTTPException) -> Any:
    tx.discard()
    status = exc.code or 500
    errors = None
    data = getattr(exc, "data", None)
    if isinstance(data, dict) and "messages" in data:
        errors = _flatten_messages(data["messages"])
    headers = dict(exc.get_headers()) if status in (405, 429) else {}
    headers.pop("Content-Type", None)
    title = exc.name
    detail = exc.description if status != 422 else "The input is not valid"
    code = "validation_failed" if status == 422 else None
    return _render(status, title, detail, code=code, errors=errors, headers=headers)


def handle_unexpected(exc: Exception) -> Any:
    tx.discard()
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    if isinstance(exc, OperationalError):
        logger.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else "unknown")
        return _render(503, ServiceUnavailable.title, None, code=ServiceUnavailable.code, headers={"Retry-After": "5"})
    if isinstance(exc, IntegrityError):
        # A race lost at a constraint: nothing was written, the client may retry.
        logger.info("integrity conflict on %s", request.endpoint)
        return _render(409, Conflict.title, None, code=Conflict.code)
    # Frames only: exception messages can carry bound SQL parameters, i.e. PHI.
    frames = " <- ".join(f"{f.filename}:{f.lineno} {f.name}" for f in reversed(traceback.extract_tb(exc.__traceback__)))
    logger.error("unhandled %s at %s", type(exc).__name__, frames)
    return internal_error()


def internal_error() -> Any:
    return _render(500, "Internal Server Error", "Something went wrong; the error was logged.", code="internal_error")


def init_app(app: Flask) -> None:
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
