"""A second person's signature on a ledger entry, and who it turns out to be (HIP-05, DEA-42, ASVS V2.3.5)."""

from __future__ import annotations

import dataclasses

from clinic.auth import scope
from clinic.auth import service as auth
from clinic.auth.errors import InvalidCredentials
from clinic.auth.models import WITNESS_ROLES, User
from clinic.extensions import db
from clinic.inventory.errors import WitnessCredentialsInvalid, WitnessInvalid, WitnessRequired
from clinic.locations.models import Location


@dataclasses.dataclass(frozen=True)
class WitnessSignature:
    """The witness's own credentials, given now; unverified until ``verify_witness``."""

    email: str
    password: str = dataclasses.field(repr=False)  # kept out of logs and tracebacks
    totp_code: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_fields(
        cls, email: str | None, password: str | None, totp_code: str | None = None
    ) -> WitnessSignature | None:
        """A request's witness fields; None when no email was given, i.e. no one signed."""
        return cls(email, password or "", totp_code) if email else None


def verify_witness(
    signature: WitnessSignature | None,
    *,
    actor: User,
    location_id: int,
    client_addr: str,
    field: str = "witness",
) -> User:
    """The person who signed, now, with their own credentials, if they may witness here (HIP-05,
    DEA-42, ASVS V2.3.5). ``field`` names the request fields the errors go to.

    A wrong password or code is kept as a failed sign-in (throttling counts it) while the request's
    own work is rolled back (clinic.core.tx).
    """
    if signature is None or not signature.email or not signature.password:
        raise WitnessRequired(errors={f"{field}_email": ["A witness must sign with their own email and password."]})
    try:
        witness = auth.verify_password(email=signature.email, password=signature.password, client_addr=client_addr)
        if witness.totp_secret is not None:
            auth.verify_totp(user=witness, code=signature.totp_code or "", client_addr=client_addr)
    except InvalidCredentials:
        raise WitnessCredentialsInvalid(
            errors={f"{field}_password": ["The witness's credentials are not correct."]}
        ) from None
    if witness.id == actor.id:
        raise WitnessInvalid(errors={f"{field}_email": ["The witness must be someone other than you."]})
    location = db.session.get(Location, location_id)
    assert location is not None
    if witness.role_enum not in WITNESS_ROLES or (
        location.rule("witness_must_be_licensed") and not witness.is_licensed
    ):
        raise WitnessInvalid(errors={f"{field}_email": ["The witness must be a licensed clinician."]})
    if not scope.may_act_at(witness, location_id):  # SYS-11: a witness works where the act happens
        raise WitnessInvalid(errors={f"{field}_email": ["The witness does not work at this location."]})
    return witness
