"""Password rules (SYS-09; OWASP ASVS 5.0, the password chapter): length, no common or breached
password, nothing of the user's own e-mail or name.

The list is ``common-passwords.txt.gz`` beside this module: 20,000 passwords most common in
breach corpora (lower-cased), compiled by Royce Williams
(https://gist.github.com/roycewilliams/226886fd01572964e1431ac8afc999ce) as Django ships it. It is
read from the package, never fetched: clinics run offline.
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
_LIST = Path(__file__).resolve().parent / "common-passwords.txt.gz"
#: what people pad a common password with to pass a length rule: digits, punctuation, spaces
_PADDING = re.compile(r"^[\W\d_]+|[\W\d_]+$")
#: words of 4+ letters of the name and of the e-mail's local part ("jo.k.smith" gives "smith"): shorter
#: ones ("Ada", "Lee") turn up by chance in random passwords too often to refuse them
_WORDS = re.compile(r"[^\W\d_]{4,}")


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(_LIST, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


def _repeats_a_short_unit(text: str) -> bool:
    """ "aaaaaaaaaaaa", "abcabcabcabc", "121212121212": one unit of up to four characters, repeated."""
    return any(len(text) % n == 0 and text == text[:n] * (len(text) // n) for n in range(1, 5))


def problems(password: str, *, email: str = "", name: str = "") -> list[str]:
    """Why ``password`` may not be used (empty: it may)."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        return [f"Use between {MIN_PASSWORD_LENGTH} and {MAX_PASSWORD_LENGTH} characters."]
    lowered = password.lower()
    core = _PADDING.sub("", lowered)
    common = common_passwords()
    if lowered in common or (len(core) >= 4 and core in common) or _repeats_a_short_unit(lowered):
        return ["This password is too common (it appears in lists of breached passwords); choose another."]
    local = email.partition("@")[0].lower()
    own = set(_WORDS.findall(f"{local} {name.lower()}"))
    if len(local) >= 4:
        own.add(local)
    if any(word in lowered for word in own):
        return ["The password must not contain your e-mail address or your name."]
    return []
