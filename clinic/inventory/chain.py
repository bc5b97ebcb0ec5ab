"""Canonical serialisation and hashing of ledger entries.

The rules live in :mod:`clinic.exports.verifier`, the file an auditor copies to verify an export
offline: one definition, so the server's hashes and the auditor's can never drift. Standard library
only on this path (the verifier imports ``cryptography`` only when it checks a signature).
"""

import os
import threading
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


class _SaltSource:
    """16-byte salts (hex) from ``os.urandom``, drawn 256 at a time.

    A salt is drawn while the entry's chain head is locked. ``os.urandom`` releases the GIL, and
    getting it back waits for the worker's other threads (up to the switch interval), so each
    call there held the location's lock longer: three salts an administration cost a fifth of the
    time under the lock. The bytes are the same kernel randomness, drawn in bulk. A forked child
    (gunicorn's workers) starts with none, so no two processes ever hand out the same salt."""

    _CHUNK = 4096

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def hex(self) -> str:
        with self._lock:
            at = self._at
            if at + 16 > len(self._pool):
                self._pool, at = os.urandom(self._CHUNK), 0
            self._at = at + 16
            return self._pool[at : at + 16].hex()


salt_hex = _SaltSource().hex
