"""The Ed25519 key that signs ledger checkpoints and export manifests.

``CLINIC_SIGNING_KEY`` names a PEM file; without it a key is generated once into the instance
folder (mode 0600). The public key is what auditors keep to verify offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app


def _key_path() -> Path:
    configured = current_app.config.get("SIGNING_KEY") or os.environ.get("CLINIC_SIGNING_KEY")
    return Path(configured) if configured else Path(current_app.instance_path) / "signing_key.pem"


def private_key() -> Ed25519PrivateKey:
    path = _key_path()
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise TypeError("CLINIC_SIGNING_KEY must be an Ed25519 private key")
    return loaded


def public_key_hex() -> str:
    raw = private_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(message: bytes) -> str:
    return private_key().sign(message).hex()


def public_key_of_file() -> str | None:
    """The configured key's public half, or None when no key file exists yet (a verifier must not
    make one: a key it generated would vouch for nothing)."""
    path = _key_path()
    if not path.exists():
        return None
    return public_key_hex()


def fingerprint(public_key_hex: str) -> str:
    """What an operator pins (CLINIC_CHECKPOINT_KEY_FINGERPRINTS): SHA-256 of the raw public key."""
    from clinic.exports.verifier import fingerprint as of_key

    return of_key(public_key_hex)


def load_public_key(value: str) -> str:
    """A public key given on the command line: a PEM file (public or private key), a file of 64 hex
    digits, or the digits themselves. The offline verifier reads ``--public-key`` the same way."""
    from clinic.exports.verifier import load_public_key as load

    return load(value)
