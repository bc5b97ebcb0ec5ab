"""Sign-in pages and the user admin page. Thin: parse, call the service, render or redirect."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, session, url_for
from marshmallow import ValidationError

from clinic.auth import members, service
from clinic.auth.models import LicenseType, Role, User
from clinic.auth.policy import client_addr, current_actor, public, require
from clinic.auth.schemas import CreateUserSchema
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import id_arg
from clinic.core.time import utcnow
from clinic.locations import service as locations_service
from clinic.web.forms import same_site_path

bp = Blueprint("auth_ui", __name__, template_folder="templates")

PENDING_SECONDS = 300


def _safe_next(target: str | None) -> str:
    return same_site_path(target) or url_for("web_ui.dashboard")


def _finish_sign_in(user: User) -> Any:
    next_url = _safe_next(session.get("next"))
    raw = service.start_session(user=user, client_addr=client_addr())
    session.clear()  # a fresh cookie at every privilege change (no fixation)
    session["sid"] = raw
    g.actor = user
    g.actor_id = user.id  # the access-log row of a sign-in names who signed in
    return redirect(next_url)


def _pending_user() -> User | None:
    pending = session.get("pending")
    if not pending or utcnow().timestamp() - pending["at"] > PENDING_SECONDS:
        return None
    user = service.get_user(pending["uid"])
    return user if user.is_active else None


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if request.method == "GET":
        target = same_site_path(request.args.get("next"))
        if target:
            session["next"] = target
        return render_template("auth/login.html")
    email = request.form.get("email", "")
    try:
        user = service.verify_password(
            email=email, password=request.form.get("password", ""), client_addr=client_addr()
        )
    except DomainError as exc:
        return render_template("auth/login.html", error=exc.detail, email=email), exc.http_status, exc.headers
    if service.totp_required(user):
        session["pending"] = {"uid": user.id, "at": utcnow().timestamp()}
        return redirect(url_for("auth_ui.totp" if user.totp_secret else "auth_ui.enrol"))
    return _finish_sign_in(user)


@bp.route("/login/totp", methods=["GET", "POST"])
@public
def totp() -> Any:
    user = _pending_user()
    if user is None or user.totp_secret is None:
        return redirect(url_for("auth_ui.login"))
    if request.method == "GET":
        return render_template("auth/totp.html")
    try:
        service.verify_totp(user=user, code=request.form.get("code", "").strip(), client_addr=client_addr())
    except DomainError as exc:
        return render_template("auth/totp.html", error=exc.detail), exc.http_status, exc.headers
    return _finish_sign_in(user)


@bp.route("/login/enrol", methods=["GET", "POST"])
@public
def enrol() -> Any:
    user = _pending_user()
    if user is None or user.totp_secret is not None:
        return redirect(url_for("auth_ui.login"))
    # Kept on the user until enrolment completes: the same key at every visit, in any browser.
    secret = service.pending_totp_secret(user)
    uri = service.totp_uri(user, secret)
    context = {"secret": secret, "uri": uri, "qr_svg": service.totp_qr_svg(uri)}
    if request.method == "GET":
        return render_template("auth/enrol.html", **context)
    try:
        service.verify_totp(
            user=user, code=request.form.get("code", "").strip(), client_addr=client_addr(), secret=secret
        )
    except DomainError as exc:
        return render_template("auth/enrol.html", error=exc.detail, **context), exc.http_status, exc.headers
    return _finish_sign_in(user)


@bp.route("/logout", methods=["POST"])
@require("self.view")
def logout() -> Any:
    raw = session.get("sid")
    if raw:
        service.end_session(raw)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth_ui.login"))


# --- user administration -----------------------------------------------------------------------


def _users_page(form: dict[str, Any] | None = None, errors: dict[str, Any] | None = None, status: int = 200) -> Any:
    return render_template(
        "auth/users.html",
        users=service.list_users(),
        memberships=members.memberships(),
        locations=locations_service.list_locations(),
        roles=list(Role),
        license_types=list(LicenseType),
        form=form or {},
        errors=errors or {},
    ), status


@bp.route("/admin/users")
@require("users.view")
def users() -> Any:
    return _users_page()


@bp.route("/admin/users", methods=["POST"])
@require("users.manage")
def create_user() -> Any:
    raw: dict[str, Any] = {k: v for k, v in request.form.items() if k not in ("csrf_token", "location_ids") and v != ""}
    raw["location_ids"] = request.form.getlist("location_ids")
    try:
        args = CreateUserSchema().load(raw)
        user = tx.attempt(lambda: service.create_user(actor=current_actor(), **args))
    except ValidationError as exc:
        return _users_page(raw, exc.normalized_messages(), 422)
    except DomainError as exc:
        return _users_page(raw, exc.errors or {"email": [exc.detail]}, exc.http_status)
    flash(f"User {user.email} created.", "success")
    return redirect(url_for("auth_ui.users"))


@bp.route("/admin/users/<int:user_id>/locations", methods=["POST"])
@require("users.manage")
def set_locations(user_id: int) -> Any:
    """The locations the user works at, as ticked (SYS-11): each one added or withdrawn is a
    membership granted or revoked, as ``PUT``/``DELETE /locations/{id}/members/{user_id}`` do."""
    wanted = {i for i in (id_arg(v) for v in request.form.getlist("location_ids")) if i is not None}
    actor = current_actor()
    try:

        def apply() -> None:
            held = set(members.location_ids_of(user_id))
            for location_id in sorted(wanted - held):
                members.grant(actor=actor, location_id=location_id, user_id=user_id)
            for location_id in sorted(held - wanted):
                members.revoke(actor=actor, location_id=location_id, user_id=user_id)

        tx.attempt(apply)
    except DomainError as exc:
        return _users_page(errors={f"locations_{user_id}": [exc.detail]}, status=exc.http_status)
    flash("Locations saved.", "success")
    return redirect(url_for("auth_ui.users"))


@bp.route("/admin/users/<int:user_id>/active", methods=["POST"])
@require("users.manage")
def set_active(user_id: int) -> Any:
    user = service.set_active(actor=current_actor(), user_id=user_id, is_active=request.form.get("is_active") == "1")
    flash(f"{user.email} is now {'active' if user.is_active else 'disabled; their sessions ended'}.", "success")
    return redirect(url_for("auth_ui.users"))


@bp.route("/admin/users/<int:user_id>/password", methods=["POST"])
@require("users.manage")
def reset_password(user_id: int) -> Any:
    try:
        user = tx.attempt(
            lambda: service.reset_password(
                actor=current_actor(), user_id=user_id, new_password=request.form.get("password", "")
            )
        )
    except DomainError as exc:
        return _users_page(
            errors={f"password_{user_id}": (exc.errors or {}).get("password", [exc.detail])}, status=exc.http_status
        )
    flash(f"Password for {user.email} reset; their sessions ended.", "success")
    return redirect(url_for("auth_ui.users"))


@bp.route("/admin/users/<int:user_id>/totp", methods=["POST"])
@require("users.manage")
def reset_totp(user_id: int) -> Any:
    user = service.reset_totp(actor=current_actor(), user_id=user_id)
    flash(f"Second factor for {user.email} reset; they enrol again at next sign-in.", "success")
    return redirect(url_for("auth_ui.users"))


# --- one's own account: API tokens ------------------------------------------------------------


def _account_page(*, new_token: str | None = None, error: str | None = None, status: int = 200) -> Any:
    actor = current_actor()
    return render_template(
        "auth/account.html",
        user=actor,
        tokens=service.live_tokens(actor.id),
        max_hours=service.max_token_hours(actor),
        default_hours=min(current_app.config["TOKEN_TTL_HOURS"], service.max_token_hours(actor)),
        new_token=new_token,
        error=error,
    ), status


@bp.route("/account")
@require("self.view")
def account() -> Any:
    return _account_page()


@bp.route("/account/tokens", methods=["POST"])
@require("self.manage_tokens")
def create_token() -> Any:
    """A token for the API (an auditor's export script, say), shown once on the page that answers:
    never flashed, since the session cookie is signed, not encrypted."""
    hours = request.form.get("ttl_hours", type=int)
    try:
        raw, _ = tx.attempt(lambda: service.issue_token(user=current_actor(), ttl_hours=hours))
    except DomainError as exc:
        return _account_page(error=" ".join((exc.errors or {}).get("ttl_hours", [exc.detail])), status=422)
    return _account_page(new_token=raw, status=201)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
@require("self.manage_tokens")
def revoke_token(token_id: int) -> Any:
    service.revoke_token_by_id(actor=current_actor(), token_id=token_id)
    flash("The token is revoked; it no longer opens the API.", "success")
    return redirect(url_for("auth_ui.account"))
