"""Canonical serialisation and hashing of ledger entries.

The rules live in :mod:`clinic.exports.verifier`, the file an auditor copies to verify an export
offline: one definition, so the server's hashes and the auditor's can never drift. Standard library
only on this path (the verifier imports ``cryptography`` only when it checks a signature).
"""

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
