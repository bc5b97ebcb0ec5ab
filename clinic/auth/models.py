from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.core.db import UtcDateTime, enum_check
from clinic.core.time import utcnow
from clinic.extensions import db


class Role(StrEnum):
    admin = "admin"
    prescriber = "prescriber"
    nurse = "nurse"
    front_desk = "front_desk"
    auditor = "auditor"


class LicenseType(StrEnum):
    md = "MD"
    do = "DO"
    np = "NP"
    pa = "PA"
    rn = "RN"
    lpn = "LPN"
    pharmd = "PharmD"


#: the licence a number means when no type is given (CONTRACT.md names no --license-type)
DEFAULT_LICENSE_TYPE = {Role.nurse: LicenseType.rn, Role.prescriber: LicenseType.md}

#: who may sign as a second person for waste, disposal and counts (DEA-42, HIP-05)
WITNESS_ROLES = frozenset({Role.nurse, Role.prescriber})


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(enum_check("role", Role), name="role_known"),
        CheckConstraint(enum_check("license_type", LicenseType, nullable=True), name="license_type_known"),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    license_number: Mapped[str | None] = mapped_column(String(64))
    license_type: Mapped[str | None] = mapped_column(String(10))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: base32 seed; set once the user has proved it with a first code.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    #: the key offered at enrolment, the same on every visit until a first code proves it (then
    #: it becomes ``totp_secret``); cleared by a reset.
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64))
    #: last accepted 30 s step: a code is usable once (ASVS V6.5.1).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: the location a member of several last chose to work at (remembered between sign-ins)
    current_location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id"))

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    @property
    def is_licensed(self) -> bool:
        return bool(self.license_number and self.license_type)

    @property
    def can_witness(self) -> bool:
        """Licensed clinician: a witness wherever the location requires one to be licensed."""
        return self.is_active and self.role_enum in WITNESS_ROLES and self.is_licensed

    def __repr__(self) -> str:  # ids only: names and emails stay out of logs
        return f"<User {self.id} {self.role}>"


class Membership(db.Model):  # type: ignore[name-defined]
    """A user may act at (staff) or read (auditors: that DEA registrant's records) one location
    (SYS-11). Admins act everywhere and need none."""

    __tablename__ = "location_members"
    __table_args__ = (Index("ix_location_members_user", "user_id"),)

    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class UserSession(db.Model):  # type: ignore[name-defined]
    """A signed-in browser. The cookie carries a random token; only its hash is stored."""

    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_live", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    client_addr: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship(lazy="joined")


class ApiToken(db.Model):  # type: ignore[name-defined]
    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user_live", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class AuthAttempt(db.Model):  # type: ignore[name-defined]
    """Every sign-in attempt, for throttling (NIST 800-63B §5.2.2) and review."""

    __tablename__ = "auth_attempts"
    __table_args__ = (
        Index("ix_auth_attempts_email_at", "email", "attempted_at"),
        Index("ix_auth_attempts_addr_at", "client_addr", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    email: Mapped[str] = mapped_column(String(254))
    client_addr: Mapped[str] = mapped_column(String(64))
    succeeded: Mapped[bool] = mapped_column(Boolean)
