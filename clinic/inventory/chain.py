"""Canonical serialisation and hashing of ledger entries.

The rules live in :mod:`clinic.exports.verifier`, the file an auditor copies to verify an export
offline: one definition, so the server's hashes and the auditor's can never drift. Standard library
only on this path (the verifier imports ``cryptography`` only when it checks a signature).
"""

from typing import Any

from clinic.exports.verifier import (  # noqa: F401 - re-exported
    FORM,
    GENESIS,
    HASHED_FIELDS,
    canonical,
    checkpoint_message,
    commitment,
    committed,
    entry_hash,
    format_time,
    get_path,
    phi_paths,
    record_hash,
    shadow_step,
)
from clinic.exports.verifier import _hash as _body_hash


def committed_record(fields: dict[str, Any]) -> bytes:
    """A form-2 entry's committed record as its hash covers it: ``canonical(committed(...), 2)``,
    what ``ledger_entries.committed_record`` keeps (UTF-8) and a CSV export's ``record`` cell is."""
    return canonical(committed(fields, fields["phi_salts"]), FORM)


def record_body_hash(body: bytes, prev_hash: str) -> str:
    """The entry hash of a committed record already serialised (:func:`committed_record`): the same
    as :func:`entry_hash` of its fields, without serialising the record twice."""
    return _body_hash(body, prev_hash)
