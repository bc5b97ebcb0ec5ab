from __future__ import annotations

from clinic.core.errors import Conflict, DomainError, NotAuthenticated


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    title = "Email, password or code is not correct"


class TooManyAttempts(DomainError):
    code = "too_many_attempts"
    http_status = 429
    title = "Too many failed sign-in attempts; wait before trying again"


class SecondFactorRequired(NotAuthenticated):
    code = "second_factor_required"
    title = "A one-time code from the authenticator app is required"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "A user with this email already exists"
