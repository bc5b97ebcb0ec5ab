"""Account rules: passwords, throttling, second factor, sessions and tokens.

Functions flush and never commit; the request or command that calls them owns the transaction.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import Connection, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from clinic.audit import service as audit
from clinic.audit.tags import Tag
from clinic.auth import members, passwords
from clinic.auth.errors import EmailTaken, InvalidCredentials, SecondFactorRequired, TooManyAttempts
from clinic.auth.models import DEFAULT_LICENSE_TYPE, ApiToken, AuthAttempt, LicenseType, Role, User, UserSession
from clinic.core import tx
from clinic.core.db import as_loaded, first_row, loaded_columns
from clinic.core.errors import DomainError, NotFound, ValidationFailed
from clinic.core.time import utcnow
from clinic.extensions import db
from clinic.locations.models import Location

logger = logging.getLogger(__name__)

# argon2id at the OWASP floor (m = 19 MiB, t = 2, p = 1): F19 asks for at least this.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, type=Type.ID)
# Verified against when the email is unknown, so both paths cost the same (no enumeration).
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password_rules(password: str, *, email: str, name: str) -> None:
    found = passwords.problems(password, email=email, name=name)
    if found:
        raise ValidationFailed(errors={"password": found})


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --- users -------------------------------------------------------------------------------------


def create_user(
    *,
    actor: User | None,
    email: str,
    name: str,
    role: str,
    password: str,
    license_number: str | None = None,
    license_type: str | None = None,
    location_ids: Sequence[int] = (),
) -> User:
    """A staff account; ``location_ids`` are the locations it is a member of (SYS-11: none for an
    admin, who acts everywhere)."""
    email = email.strip().lower()
    if len(email) > 254:  # lower-casing can lengthen a string ("İ" becomes two characters)
        raise ValidationFailed(errors={"email": ["Longer than maximum length 254."]})
    if role not in Role.__members__:
        raise ValidationFailed(errors={"role": [f"Must be one of: {', '.join(Role)}."]})
    license_number = (license_number or "").strip() or None
    license_type = _license_type(Role(role), license_number, license_type or None)
    _check_password_rules(password, email=email, name=name)
    if db.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise EmailTaken()
    wanted = sorted(set(location_ids)) if role != Role.admin else []
    known = set(db.session.scalars(select(Location.id).where(Location.id.in_(wanted)))) if wanted else set()
    if unknown := [i for i in wanted if i not in known]:
        raise NotFound(
            "No such location", errors={"location_ids": [f"No such location: {', '.join(map(str, unknown))}."]}
        )
    user = User(
        email=email,
        name=name.strip(),
        role=role,
        password_hash=hash_password(password),
        license_number=license_number,
        license_type=license_type,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        actor=actor,
        tag=Tag.auth_user_create,
        subject=("user", user.id),
        data={"role": role, "licensed": user.is_licensed},
    )
    for location_id in wanted:
        members.grant(actor=actor, location_id=location_id, user_id=user.id)
    return user


def _license_type(role: Role, number: str | None, given: str | None) -> str | None:
    """A number alone takes the role's usual licence (nurse RN, prescriber MD) or is refused:
    a licence of unknown type would make a user who silently cannot witness."""
    if given is not None and given not in {t.value for t in LicenseType}:
        raise ValidationFailed(errors={"license_type": [f"Must be one of: {', '.join(LicenseType)}."]})
    if number is None:
        if given is not None:
            raise ValidationFailed(errors={"license_number": ["Give the licence number for this licence type."]})
        return None
    if given is None:
        default = DEFAULT_LICENSE_TYPE.get(role)
        if default is None:
            raise ValidationFailed(
                errors={"license_type": [f"Add the licence type ({', '.join(LicenseType)}) for this licence number."]}
            )
        return default.value
    return given


def get_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound("No such user")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.name, User.id)))


def set_active(*, actor: User, user_id: int, is_active: bool) -> User:
    user = get_user(user_id)
    if user.is_active != is_active:
        user.is_active = is_active
        if not is_active:
            revoke_all(user_id=user.id)
        audit.record(
            actor=actor,
            tag=Tag.auth_user_enable if is_active else Tag.auth_user_disable,
            subject=("user", user.id),
            data={"is_active": [not is_active, is_active]},
        )
    db.session.flush()
    return user


def reset_password(*, actor: User, user_id: int, new_password: str) -> User:
    user = get_user(user_id)
    _check_password_rules(new_password, email=user.email, name=user.name)
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    revoke_all(user_id=user.id)
    audit.record(actor=actor, tag=Tag.auth_user_reset_password, subject=("user", user.id), data={})
    db.session.flush()
    return user


def reset_totp(*, actor: User, user_id: int) -> User:
    user = get_user(user_id)
    user.totp_secret = None
    user.totp_pending_secret = None
    user.totp_last_step = None
    revoke_all(user_id=user.id)
    audit.record(actor=actor, tag=Tag.auth_user_reset_totp, subject=("user", user.id), data={})
    db.session.flush()
    return user


def revoke_all(*, user_id: int) -> None:
    """Kill every live session and token of a user at once (ASVS V7.4.2), their own calendar feeds
    included: a feed's URL is a bearer credential too, and a deactivated prescriber's went on
    publishing the clinic's visits."""
    from clinic.scheduling.models import CalendarFeed  # scheduling imports auth: loaded when needed

    now = utcnow()
    for model in (UserSession, ApiToken, CalendarFeed):
        db.session.execute(
            update(model).where(model.user_id == user_id, model.revoked_at.is_(None)).values(revoked_at=now)
        )


# --- sign-in -----------------------------------------------------------------------------------


def totp_required(user: User) -> bool:
    return user.role in current_app.config["TOTP_REQUIRED_ROLES"] or user.totp_secret is not None


def check_throttle(*, email: str, client_addr: str, known: bool = True) -> None:
    """Refuse before looking at the password once too many recent attempts failed."""
    _refuse_if_throttled(db.session(), email.strip().lower(), client_addr, known=known)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # aggregate results bypass the column type on SQLite
        moment = datetime.fromisoformat(str(moment)).replace(tzinfo=utcnow().tzinfo)
    return moment


def _retry_after(oldest: datetime, wait: timedelta) -> int:
    return max(1, int((_aware(oldest) + wait - utcnow()).total_seconds()) + 1)


def _refuse_if_throttled(db_conn: Connection | Session, email: str, client_addr: str, *, known: bool) -> None:
    """Per account: its failures in the window (a known or an unknown e-mail alike, so the answer
    never says which exists). Per address: only failures naming no account count, and only attempts
    naming no account are refused, so a password sprayer or a typo-prone proxy full of users cannot
    lock staff out of their own accounts (SYS-08)."""
    cfg = current_app.config
    window = timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"])
    since = utcnow() - window
    failures = db_conn.execute(
        select(func.count(), func.min(AuthAttempt.attempted_at)).where(
            AuthAttempt.email == email[:254], AuthAttempt.attempted_at > since, AuthAttempt.succeeded.is_(False)
        )
    ).one()
    if failures[0] >= cfg["LOGIN_MAX_FAILURES_PER_ACCOUNT"]:
        raise TooManyAttempts(headers={"Retry-After": str(_retry_after(failures[1], window))})
    if not known:
        delay = address_delay(db_conn, client_addr)
        if delay:
            raise TooManyAttempts(headers={"Retry-After": str(delay)})


def address_delay(db_conn: Connection | Session, client_addr: str) -> int | None:
    """Seconds an address must still wait, once its failures on unknown accounts reach the limit:
    LOGIN_BASE_DELAY_SECONDS (2) after the failure that reached it, doubling with each one after (capped)."""
    cfg = current_app.config
    since = utcnow() - timedelta(minutes=cfg["LOGIN_WINDOW_MINUTES"])
    count, latest = db_conn.execute(
        select(func.count(), func.max(AuthAttempt.attempted_at)).where(
            AuthAttempt.client_addr == client_addr,
            AuthAttempt.attempted_at > since,
            AuthAttempt.succeeded.is_(False),
            AuthAttempt.email.not_in(select(User.email)),
        )
    ).one()
    over = count - cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]
    if over < 0 or latest is None:
        return None
    wait = timedelta(seconds=min(cfg["LOGIN_MAX_DELAY_SECONDS"], cfg["LOGIN_BASE_DELAY_SECONDS"] * 2 ** min(over, 30)))
    if utcnow() >= _aware(latest) + wait:
        return None
    return _retry_after(latest, wait)


# Advisory-lock classes (PostgreSQL): one per throttled key, so an account's key never meets an address's.
_LOCK_ACCOUNT, _LOCK_ADDRESS = 0x61757468, 0x61646472


def _claims_alone() -> bool:
    """Whether an attempt can be claimed in a transaction of its own, on a second connection.

    Not on SQLite once the request's transaction has begun (a witness signing mid-request): that
    transaction holds the database's one write lock (BEGIN IMMEDIATE), so a second connection would
    wait on it. Then nobody else can count or record an attempt meanwhile either, and the request's
    own count is exact: the failure is kept (clinic.core.tx) as before.
    """
    return db.engine.dialect.name != "sqlite" or not db.session().in_transaction()


@dataclass(frozen=True)
class _Claim:
    attempt_id: int
    user_id: int | None
    password_hash: str | None
    is_active: bool
    #: the address's wait, when it is over its limit: a failure then answers 429, known account or not
    address_delay: int | None = None


def _claim(email: str, client_addr: str, *, user_email: str | None = None, known: bool = False) -> _Claim:
    """Count this attempt as failed before its secret is looked at, or refuse it (429).

    Counted and recorded in one short transaction of its own, under a lock per account and per
    address on PostgreSQL (SQLite's BEGIN IMMEDIATE serialises it): of N attempts at once, only as
    many as the limit still allows are claimed, and each claim is committed before its password is
    checked, so no attempt is judged against a count that misses the others. ``_settle`` turns the
    claim into a success; a failure needs nothing more, and stays counted whatever the request does.
    With ``user_email`` the account (id, password hash, whether active) is read in that transaction.
    """
    with tx.alone() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(_LOCK_ACCOUNT, func.hashtext(email))))
            conn.execute(select(func.pg_advisory_xact_lock(_LOCK_ADDRESS, func.hashtext(client_addr))))
        row = conn.execute(select(User.id, User.password_hash, User.is_active).where(User.email == email)).first()
        known = known or row is not None
        _refuse_if_throttled(conn, email, client_addr, known=known)
        attempt_id: int = conn.execute(
            insert(AuthAttempt).values(email=email[:254], client_addr=client_addr, succeeded=False)
        ).inserted_primary_key[0]  # type: ignore[index]
        delay = address_delay(conn, client_addr) if known else None
    if row is None or user_email is None:
        return _Claim(attempt_id, None, None, False, delay)
    return _Claim(attempt_id, row.id, row.password_hash, bool(row.is_active), delay)


def _settle(attempt_id: int) -> None:
    """The claimed attempt succeeded: no longer a failure (in its own transaction, like the claim)."""
    with tx.alone() as conn:
        conn.execute(update(AuthAttempt).where(AuthAttempt.id == attempt_id).values(succeeded=True))


def _attempt(email: str, client_addr: str, succeeded: bool) -> None:
    """Record an attempt made inside the request's SQLite transaction (see ``_claims_alone``)."""
    attempt = AuthAttempt(email=email.strip().lower()[:254], client_addr=client_addr, succeeded=succeeded)
    if succeeded:
        db.session.add(attempt)
    else:  # counted by throttling even though the request that carried it writes nothing
        tx.keep(attempt)


def _password_ok(password_hash: str | None, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash or _DUMMY_HASH, password)) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def _password_failed(user_id: int | None, address_delay: int | None = None) -> DomainError:
    """The failure's answer: 401, or 429 while the address waits (then a known account's wrong
    password answers as an unknown e-mail does, so the status never tells which exists)."""
    audit.record(
        actor=None,
        tag=Tag.auth_session_failed,
        subject=("user", user_id),
        data={"factor": "password"},
        keep=True,
    )
    if address_delay:
        return TooManyAttempts(headers={"Retry-After": str(address_delay)})
    return InvalidCredentials()


def verify_password(*, email: str, password: str, client_addr: str) -> User:
    """First factor. Raises the same error for an unknown email and a wrong password.

    Every attempt is recorded; a failed one is counted by throttling even though the request that
    carried it (a witness's signature on a movement, say) writes nothing else.
    """
    if "\x00" in email or len(email) > 254:  # cannot be anyone's email; PostgreSQL text refuses NUL
        raise InvalidCredentials()
    email = email.strip().lower()
    if not _claims_alone():
        return _verify_password_in_transaction(email, password, client_addr)
    # The account is read in the claim's transaction while the session is idle (on SQLite a read of
    # its own would take the write lock the settling needs); else by the session, which may hold
    # the account uncommitted (a CLI command or a task that creates a user and has them sign).
    idle = not db.session().in_transaction()
    claim = _claim(email, client_addr, user_email=email if idle else None)
    if not idle:
        loaded = db.session.scalar(select(User).where(User.email == email))
        if loaded is not None:
            claim = replace(claim, user_id=loaded.id, password_hash=loaded.password_hash, is_active=loaded.is_active)
    if not (_password_ok(claim.password_hash, password) and claim.is_active and claim.user_id is not None):
        raise _password_failed(claim.user_id, claim.address_delay)
    _settle(claim.attempt_id)
    user = db.session.get(User, claim.user_id)
    if user is None:  # users are never deleted; but the claim's read is no promise of the session's
        raise InvalidCredentials()
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _verify_password_in_transaction(email: str, password: str, client_addr: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    check_throttle(email=email, client_addr=client_addr, known=user is not None)
    if user is None or not (_password_ok(user.password_hash, password) and user.is_active):
        _attempt(email, client_addr, False)
        delay = address_delay(db.session(), client_addr) if user is not None else None
        raise _password_failed(user.id if user else None, delay)
    _attempt(email, client_addr, True)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def verify_totp(*, user: User, code: str, client_addr: str, secret: str | None = None) -> None:
    """Second factor: the current or the previous 30 s step, each step usable once.

    Throttled like the password: the attempt is claimed (counted) before the code is compared.
    """
    claim = _claim(user.email, client_addr, known=True) if _claims_alone() else None
    if claim is None:
        check_throttle(email=user.email, client_addr=client_addr)
    seed = secret or user.totp_secret
    step_now = int(time.time()) // 30
    accepted: int | None = None
    if seed and code and code.isdigit():
        totp = pyotp.TOTP(seed)
        for step in (step_now, step_now - 1):
            if secrets.compare_digest(totp.at(step * 30), code):
                accepted = step
                break
    if accepted is not None:
        # Claim the step in the database: of two requests racing with one code, only one gets it.
        claimed = db.session.execute(
            update(User)
            .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < accepted))
            .values(totp_last_step=accepted)
            .execution_options(synchronize_session=False)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            accepted = None
    if accepted is None:
        if claim is None:
            _attempt(user.email, client_addr, False)
        audit.record(
            actor=None, tag=Tag.auth_session_failed, subject=("user", user.id), data={"factor": "totp"}, keep=True
        )
        raise InvalidCredentials()
    if claim is not None:
        _settle(claim.attempt_id)
    else:
        _attempt(user.email, client_addr, True)
    user.totp_last_step = accepted  # already written above; keeps the loaded user in step
    if secret:
        user.totp_secret = secret
        user.totp_pending_secret = None
        audit.record(actor=user, tag=Tag.auth_user_enrol_totp, subject=("user", user.id), data={})
    db.session.flush()


def authenticate(*, email: str, password: str, totp_code: str | None, client_addr: str) -> User:
    """Both factors at once, as the token endpoint takes them."""
    user = verify_password(email=email, password=password, client_addr=client_addr)
    if totp_required(user):
        if user.totp_secret is None:
            raise SecondFactorRequired("Enrol an authenticator app by signing in to the web UI first.")
        if not totp_code:
            raise SecondFactorRequired()
        verify_totp(user=user, code=totp_code, client_addr=client_addr)
    return user


def new_totp_secret() -> str:
    return pyotp.random_base32()


def pending_totp_secret(user: User) -> str:
    """The key to enrol (SYS-10): made once and kept until enrolment completes, so every visit (another
    sign-in, another browser) shows the key the user may already have scanned. Of two first visits
    at once, one key is kept and both show it."""
    if user.totp_pending_secret is None:
        db.session.execute(
            update(User)
            .where(User.id == user.id, User.totp_pending_secret.is_(None))
            .values(totp_pending_secret=new_totp_secret())
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(user, ["totp_pending_secret"])
    assert user.totp_pending_secret is not None
    return user.totp_pending_secret


def totp_qr_svg(uri: str) -> str:
    """The setup link as a QR code, drawn here as inline SVG (SYS-10: no image service, no network)."""
    import segno

    return str(segno.make(uri, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff", omitsize=False))


def totp_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="clinic-ops")


# --- sessions and tokens -----------------------------------------------------------------------


def start_session(*, user: User, client_addr: str) -> str:
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.add(
        UserSession(
            token_hash=token_hash(raw),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=current_app.config["SESSION_MAX_HOURS"]),
            client_addr=client_addr,
        )
    )
    audit.record(actor=user, tag=Tag.auth_session_start, subject=("user", user.id), data={})
    db.session.flush()
    return raw


# Built once: every request runs one of these, and the checks are in the WHERE clause, so a dead or
# revoked credential and an unknown one cost the same single round trip.
#: the user's columns as a plain row (clinic.core.db.as_loaded): a request's one unavoidable read
_USER_KEYS, _USER_COLUMNS = loaded_columns(User)
_LIVE_TOKEN = (
    select(*_USER_COLUMNS)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(
        ApiToken.token_hash == bindparam("token_hash"),
        ApiToken.revoked_at.is_(None),
        ApiToken.expires_at > bindparam("now"),
        User.is_active.is_(True),
    )
)
_LIVE_SESSION = (
    select(User, UserSession.id, UserSession.last_seen_at)
    .join(UserSession, UserSession.user_id == User.id)
    .where(
        UserSession.token_hash == bindparam("token_hash"),
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > bindparam("now"),
        UserSession.last_seen_at > bindparam("idle_since"),
        User.is_active.is_(True),
    )
)


@dataclass(frozen=True)
class LiveSession:
    session_id: int
    user: User
    needs_touch: bool


def load_session(raw: str) -> LiveSession | None:
    """The session behind a cookie if it is live (not revoked, not idle, not past its lifetime) and its
    user active: one query, the session and its user joined."""
    now = utcnow()
    idle = timedelta(minutes=current_app.config["IDLE_TIMEOUT_MINUTES"])
    params = {"token_hash": token_hash(raw), "now": now, "idle_since": now - idle}
    row = db.session.execute(_LIVE_SESSION, params).first()
    if row is None:
        return None
    user, session_id, last_seen_at = row
    return LiveSession(session_id, user, needs_touch=now - last_seen_at > timedelta(seconds=30))


def touch_session(session_id: int) -> None:
    db.session.execute(update(UserSession).where(UserSession.id == session_id).values(last_seen_at=utcnow()))


def end_session(raw: str) -> None:
    db.session.execute(
        update(UserSession)
        .where(UserSession.token_hash == token_hash(raw), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def max_token_hours(user: User) -> int:
    """12 h by default (SYS-10): a stolen token is short-lived; only the service accounts the
    deployment names (CLINIC_TOKEN_SERVICE_ACCOUNTS, e-mails) may hold longer ones."""
    cfg = current_app.config
    service_accounts = {e.strip().lower() for e in cfg["TOKEN_SERVICE_ACCOUNTS"] or []}
    if user.email in service_accounts:
        return int(cfg["TOKEN_SERVICE_MAX_TTL_HOURS"])
    return int(cfg["TOKEN_MAX_TTL_HOURS"])


def issue_token(*, user: User, ttl_hours: float | None = None) -> tuple[str, datetime]:
    cfg = current_app.config
    longest = max_token_hours(user)
    hours = min(cfg["TOKEN_TTL_HOURS"], longest) if ttl_hours is None else ttl_hours
    if not 0 < hours <= longest:
        raise ValidationFailed(errors={"ttl_hours": [f"Must be above 0 and at most {longest} hours for this account."]})
    raw = "cot_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(hours=hours)
    db.session.add(ApiToken(token_hash=token_hash(raw), user_id=user.id, expires_at=expires_at))
    audit.record(actor=user, tag=Tag.auth_token_issue, subject=("user", user.id), data={"ttl_hours": hours})
    db.session.flush()
    return raw, expires_at


def live_tokens(user_id: int) -> list[ApiToken]:
    """A user's tokens that still work, newest first (the account page lists them)."""
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow())
            .order_by(ApiToken.id.desc())
        )
    )


def revoke_token_by_id(*, actor: User, token_id: int) -> None:
    """Only one's own token: another user's id is the same 404 as one that never existed."""
    revoked = db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.user_id == actor.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not revoked.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such token")
    audit.record(actor=actor, tag=Tag.auth_token_revoke, subject=("user", actor.id), data={"token_id": token_id})


def load_token(raw: str) -> User | None:
    """The active user behind a live bearer token: one query, the token and its user joined."""
    connection = db.session.connection()
    params = {"token_hash": token_hash(raw), "now": utcnow()}
    row = first_row(connection, _LIVE_TOKEN, params)
    return None if row is None else as_loaded(db.session(), User, _USER_KEYS, row)


def revoke_token(*, actor: User, raw: str) -> None:
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == token_hash(raw), ApiToken.user_id == actor.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    audit.record(actor=actor, tag=Tag.auth_token_revoke, subject=("user", actor.id), data={})
