"""The PDF of an export, laid out like a controlled-substance log book (DEA-26 fields on a page).

The rows come from the bundle's own ``.rows.jsonl`` (the verified evidence), so the printed page
shows what the verifier checks. WeasyPrint fetches nothing: no reference outside the document.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from clinic.exports import verifier as proof
from clinic.exports.writer import iter_rows

TITLES = {
    "dispensing-log": "Controlled-substance dispensing log",
    "receiving-log": "Controlled-substance receiving log",
    "waste-log": "Controlled-substance waste log",
    "loss-log": "Theft and loss log (DEA Form 106 data)",
    "disposal-log": "Disposal log (DEA Form 41 data)",
    "inventory": "Controlled-substance inventories",
    "ledger": "Controlled-substance ledger",
    "access-log": "Access log",
    "audit-trail": "Audit trail",
}
#: long JSON cells a page cannot show; the CSV and JSON Lines carry them
WIDE = {"lines", "form_41", "details", "registrant", "form_106", "prev_hash", "data"}


@cache
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )


def render(target: Path, manifest: dict[str, Any], rows_path: Path) -> None:
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    columns = [h for h, _ in proof.KINDS[manifest["kind"]][1] if h not in WIDE]
    seg = manifest.get("segment")
    html = (
        _env()
        .get_template("exports/logbook.html")
        .render(
            title=TITLES[manifest["kind"]],
            registrant=manifest.get("registrant") or {"name": "All locations", "address": "", "dea_registration": ""},
            since=manifest["filters"]["since"],
            until=manifest["filters"]["until"],
            filters=", ".join(
                f"{k} {v}" for k, v in manifest["filters"].items() if v is not None and k not in ("since", "until")
            )
            or "none",
            profile=manifest["profile"],
            generated_at=manifest["generated_at"],
            generated_by=(manifest.get("generated_by") or {}).get("name", "the command line"),
            rows=manifest["rows"],
            segment=f"{seg['first_seq']}..{seg['last_seq']}" if seg else "n/a",
            key=proof.fingerprint(_key())[:16],
            columns=columns,
            body=({**r, "hash": r.get("hash", "")} for r in iter_rows(rows_path)),
        )
    )
    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    HTML(string=html, url_fetcher=fetcher).write_pdf(target)


def _key() -> str:
    from clinic.core import signing

    return signing.public_key_hex()
