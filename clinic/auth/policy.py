"""The one authorisation policy: permission -> roles, and the guard that enforces it.

Every endpoint names its permission with ``@require("...")`` or ``@public``; the guard runs before
every request, so an endpoint that names nothing is denied to everyone (deny by default), and
``tests/auth/test_access_matrix.py`` walks every registered route against this table.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Request, Response, current_app, g, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError

from clinic.audit import service as audit
from clinic.auth import scope
from clinic.auth import service as auth
from clinic.auth.models import Role, User
from clinic.core import errors, tx
from clinic.core.errors import NotAuthenticated, PermissionDenied
from clinic.extensions import csrf, db

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC = "public"
ALL_ROLES = frozenset(Role)
STAFF = frozenset({Role.admin, Role.prescriber, Role.nurse, Role.front_desk})
CLINICIANS = frozenset({Role.prescriber, Role.nurse})

#: permission -> roles allowed. Later issues add their rows here and nowhere else.
POLICY: dict[str, frozenset[Role]] = {
    "self.view": ALL_ROLES,
    "self.manage_tokens": ALL_ROLES,
    "dashboard.view": ALL_ROLES,
    "users.view": frozenset({Role.admin}),
    "users.manage": frozenset({Role.admin}),
    # Locations and the drug catalog: configured by admins, read by staff and auditors.
    "locations.view": ALL_ROLES,
    "locations.manage": frozenset({Role.admin}),
    "catalog.manage": frozenset({Role.admin}),
    # Patients: staff see demographics and contact (auditors never); clinical detail (screening
    # answers and flags, weights) only clinicians and admins; clinicians chart; prescribers override.
    "patients.view": STAFF,
    "patients.create": frozenset({Role.front_desk, Role.nurse, Role.prescriber, Role.admin}),
    "patients.update": frozenset({Role.front_desk, Role.nurse, Role.prescriber, Role.admin}),
    "patients.clinical_view": frozenset({Role.prescriber, Role.nurse, Role.admin}),
    "patients.chart": CLINICIANS,
    "patients.override": frozenset({Role.prescriber}),
    "patients.rems": STAFF,
    # The ledger: clinicians write, auditors read; admins configure but never move stock (§4.3).
    "inventory.view": frozenset({Role.nurse, Role.prescriber, Role.admin, Role.auditor}),
    "inventory.receive": CLINICIANS,
    "inventory.administer": CLINICIANS,
    "inventory.waste": CLINICIANS,
    "inventory.transfer": CLINICIANS,
    "inventory.loss": CLINICIANS,
    "inventory.dispose": CLINICIANS,
    "inventory.count": CLINICIANS,
    "inventory.correct": CLINICIANS,
    "inventory.resolve": frozenset({Role.prescriber, Role.admin}),
    "inventory.report": frozenset({Role.prescriber, Role.nurse, Role.admin}),
    # Scheduling: everyone on staff sees the calendar; front desk and clinicians book.
    "scheduling.view": STAFF,
    "scheduling.book": STAFF,
    "protocols.manage": frozenset({Role.admin, Role.prescriber}),
    # The dosing visit: staff see the board and check patients in; clinicians chart, dose and
    # discharge; prescribers order, discharge early, and release a blood-pressure hold (SPR-11).
    "visits.view": STAFF,
    "visits.check_in": STAFF,
    "visits.chart": CLINICIANS,
    "visits.dose": CLINICIANS,
    "visits.discharge": CLINICIANS,
    "visits.order": frozenset({Role.prescriber}),
    "visits.release_hold": frozenset({Role.prescriber}),
    # Outcome measures (PHQ-9, GAD-7): clinicians record, clinicians and admins read, prescribers
    # acknowledge the item-9 safety alert; never the front desk or auditors.
    "outcomes.record": CLINICIANS,
    "outcomes.view": frozenset({Role.prescriber, Role.nurse, Role.admin}),
    "outcomes.acknowledge": frozenset({Role.prescriber}),
    # Reminders: staff see the outbox and a patient's reminders (no clinical detail in them) and
    # retry or cancel them; admins set a location's rules. The inbox (the bell) is staff's.
    "reminders.view": STAFF,
    "reminders.manage": STAFF,
    "reminders.configure": frozenset({Role.admin}),
    "notices.view": STAFF,
    # Auditor exports (issue 13): auditors and admins export and read their exports; an export changes
    # no record (it writes its own job row, the logs and the accounting of disclosures). Admins
    # (the privacy officer) read a patient's accounting of disclosures (HIP-07).
    "exports.create": frozenset({Role.admin, Role.auditor}),
    "exports.view": frozenset({Role.admin, Role.auditor}),
    "disclosures.view": frozenset({Role.admin}),
}

#: endpoints of libraries we do not decorate ourselves.
PUBLIC_ENDPOINTS = frozenset(
    {
        "static",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
        "api-docs.openapi_redoc",
        "api-docs.openapi_rapidoc",
        "web_ui.docs",
    }
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def require(permission: str) -> Callable[[F], F]:
    if permission not in POLICY:
        raise KeyError(f"unknown permission {permission!r}")

    def mark(fn: F) -> F:
        fn.permission = permission  # type: ignore[attr-defined]
        return fn

    return mark


def public(fn: F) -> F:
    fn.permission = PUBLIC  # type: ignore[attr-defined]
    return fn


def permission_for(app: Flask, endpoint: str, method: str) -> str | None:
    if endpoint in PUBLIC_ENDPOINTS:
        return PUBLIC
    view = app.view_functions.get(endpoint)
    if view is None:
        return None
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        handler = getattr(view_class, method.lower(), None)
        if handler is None and method == "HEAD":
            handler = getattr(view_class, "get", None)
        return getattr(handler, "permission", None)
    return getattr(view, "permission", None)


def allowed(user: User, permission: str) -> bool:
    return permission == PUBLIC or user.role_enum in POLICY.get(permission, frozenset())


def current_actor() -> User:
    actor: User | None = g.get("actor")
    if actor is None:
        raise NotAuthenticated()
    return actor


def client_addr() -> str:
    return request.remote_addr or "unknown"


def is_api_request() -> bool:
    return request.path.startswith("/api/")


def _authenticate() -> User | None:
    """The request's user, from its bearer token (API) or its session cookie (pages).

    This is the request's first statement, so a pooled connection the database dropped (a restart, a
    failover) fails here and nowhere later: SQLAlchemy then invalidates the whole pool, and since
    nothing has been done yet, the lookup is tried once more on a fresh connection. That is all the
    disconnect handling there is (no ping per checkout); a database still down answers 503 (F14).
    """
    try:
        return _credentials_user()
    except OperationalError as exc:
        if not exc.connection_invalidated:
            raise
        logger.warning("database connection lost; retrying on a new one request_id=%s", g.get("request_id"))
        tx.discard()
        return _credentials_user()


def _credentials_user() -> User | None:
    if is_api_request():
        header = request.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() == "bearer" and raw.strip():
            return auth.load_token(raw.strip())
        return None
    sid: str | None = session.get("sid")
    if not sid:
        return None
    live = auth.load_session(sid)
    if live is None:
        session.clear()
        return None
    g.session_id = live.session_id
    g.touch_session = live.needs_touch
    return live.user


def _here() -> tuple[Any, Request]:
    """The request's ``g`` and ``request`` themselves: the request path below reads them a few dozen
    times, and every read through Flask's proxies is a context-variable lookup."""
    return cast(Any, g)._get_current_object(), cast(Any, request)._get_current_object()


def _guard() -> None:
    here, req = _here()
    here.started = time.perf_counter()
    supplied = req.environ.get("HTTP_X_REQUEST_ID", "")
    here.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    endpoint = req.endpoint
    if endpoint is None:  # 404/405: let routing answer
        return
    if req.method == "OPTIONS" and getattr(req.url_rule, "provide_automatic_options", False):
        # Flask answers it (Allow, no body) without running the view: nothing to protect or log.
        here.permission = PUBLIC
        return
    permission = permission_for(current_app, endpoint, req.method)
    here.permission = permission
    if permission == PUBLIC:
        _check_csrf()
        return
    user = _authenticate()
    if user is None:
        here.auth_state = "unauthenticated"
        raise NotAuthenticated(headers={"WWW-Authenticate": "Bearer"} if is_api_request() else None)
    here.actor = user
    here.actor_id = user.id
    if permission is None or not allowed(user, permission):
        here.auth_state = "denied"
        raise PermissionDenied()
    _check_csrf()
    scope.check_request(user, req)  # SYS-11: anything the request names lies where the user works


def _object_of_request(req: Request, here: Any, ok: bool) -> str:
    """The URL's ids, and on success the objects the request created (a new ledger entry's id)."""
    args = req.view_args or {}
    named = [f"{k.removesuffix('_id')}:{v}" for k, v in sorted(args.items())]
    if ok:
        named += here.get("_touched", [])
    return ",".join(named)


def _outcome(here: Any, status: int) -> str:
    state = here.get("auth_state")
    if state:
        return state
    if status < 400:
        return "allowed"
    if status == 403:
        return "denied"
    return "error" if status >= 500 else "failed"


def _finish(response: Response) -> Response:
    """Own the request's unit of work: its work and its access-log row commit together, once.

    A response of 400 or more writes none of the work: it is rolled back, and the access-log row
    (with what the failure kept, such as a failed sign-in) goes in a short transaction of its own.
    If the commit fails, the client is told so (5xx or 409) rather than shown a success.
    """
    status = response.status_code
    here = _here()[0]
    attributable = here.get("actor") is not None or here.get("auth_state") is not None
    session_id = here.get("session_id") if here.get("touch_session") else None
    if status >= 400:
        if session_id is not None:
            tx.on_rollback(lambda: auth.touch_session(session_id))
        return _log_line(_end(response, ok=False, attributable=attributable))
    try:
        if session_id is not None:
            auth.touch_session(session_id)
        db.session.flush()  # the work's own conflicts (a race lost at a constraint) answer 409 here
    except Exception as exc:
        return _log_line(
            _end(current_app.make_response(errors.handle_unexpected(exc)), ok=False, attributable=attributable)
        )
    return _log_line(_end(response, ok=True, attributable=attributable))


def _end(response: Response, *, ok: bool, attributable: bool) -> Response:
    row = _access_row(response.status_code, attributable)
    try:
        if ok:  # the access-log row goes with the COMMIT (one round trip); if it fails, nothing commits
            tx.commit(last=audit.access_insert(row) if row is not None else None)
        else:
            if row is not None:
                tx.on_rollback(lambda: audit.log_access(row))
            tx.rollback()
    except errors.DomainError as exc:  # a rule checked by a statement sent with the COMMIT refused it
        failed = current_app.make_response(errors.handle_domain_error(exc))
        _log_failure(failed.status_code, attributable)
        return failed
    except Exception as exc:  # the access-log row (or the database) failed: nothing may stand unlogged
        # The name only: an exception's text can carry bound SQL parameters, i.e. PHI.
        logger.error("unit of work failed request_id=%s: %s", g.get("request_id"), type(exc).__name__)  # noqa: TRY400
        if isinstance(exc, OperationalError):
            failed = current_app.make_response(errors.handle_unexpected(exc))
        else:
            failed = current_app.make_response(errors.internal_error())
        _log_failure(failed.status_code, attributable)
        return failed
    return response


def _log_failure(status: int, attributable: bool) -> None:
    """The failed request's own access-log row, alone; if even that cannot be written, say so in the log."""
    row = _access_row(status, attributable)
    if row is None:
        return
    try:
        audit.log_access(row)
        tx.commit()
    except Exception as exc:
        tx.discard()
        logger.error("access log write failed request_id=%s: %s", g.get("request_id"), type(exc).__name__)  # noqa: TRY400


def _access_row(status: int, attributable: bool) -> dict[str, Any] | None:
    if not attributable:  # anonymous use of a public page: nothing to attribute
        return None
    here, req = _here()
    return audit.access_event(
        user_id=here.get("actor_id"),
        action=f"{req.method} {req.endpoint}",
        obj=_object_of_request(req, here, status < 400),
        outcome=_outcome(here, status),
        status_code=status,
        client_addr=req.remote_addr or "unknown",
        request_id=here.request_id,
    )


def _log_line(response: Response) -> Response:
    here, req = _here()
    request_id = here.get("request_id")
    response.headers["X-Request-ID"] = request_id or ""
    now = time.perf_counter()
    logger.info(
        "request",
        extra={
            "request_id": request_id,
            "method": req.method,
            "endpoint": req.endpoint,
            "status": response.status_code,
            "user_id": here.get("actor_id"),
            "ms": round((now - here.get("started", now)) * 1000, 1),
        },
    )
    return response


def _check_csrf() -> None:
    if is_api_request() or request.method in ("GET", "HEAD", "OPTIONS"):
        return  # the API takes bearer tokens only, which a browser never sends on its own
    try:
        csrf.protect()
    except CSRFError:
        g.auth_state = "denied"
        raise PermissionDenied(
            "The form expired or did not come from this site; reload the page and try again."
        ) from None


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, but a request without cookies (as API requests come) gets its
    empty session without a signing serializer being built for it first."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = _SessionInterface()
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf.init_app(app)
    app.before_request(_guard)
    app.after_request(_finish)
