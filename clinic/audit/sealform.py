"""The canonical form of access-log and audit-trail rows, and of the seals over ranges of them.

The rules live in :mod:`clinic.exports.verifier` (section 1b), the file an auditor copies to check
an access-log export offline (``clinic-verify``): one definition, so ``clinic ledger verify`` and
the auditor apply the very same rules (SYS-05, HIP-04). Standard library only on this path.

- A row's digest: SHA-256(0x00 || canonical_json({"stream": ..., every sealed field})).
  The row's ``id`` is hashed, so a row moved, inserted or dropped inside a sealed range changes the root.
- A range's root: the Merkle tree hash of RFC 6962 §2.1 over the row digests in ``id`` order
  (interior node = SHA-256(0x01 || left || right), split at the largest power of two below n).
  The leaves are 0x00-prefixed digests, so a leaf can never pass for an interior node.
- A seal: its body (stream, seq, first and last id of its range, row count, root, the previous
  seal's hash, its newest row's time, when it was sealed) in canonical JSON is what Ed25519 signs;
  its hash, which the next seal names as ``prev_hash``, is SHA-256(0x02 || body || signature hex).
  Removing or re-signing a seal breaks the next seal's link.
"""

from clinic.exports.verifier import (  # noqa: F401 - re-exported
    GENESIS,
    SEAL_FIELDS,
    STREAM_FIELDS,
    canonical_row,
    purge_message,
    range_root,
    row_digest,
    seal_hash,
    seal_message,
)
from clinic.exports.verifier import seal_time as format_time  # noqa: F401 - re-exported
