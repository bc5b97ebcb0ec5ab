"""The monitoring form as a person reads it: one HTML rendering for the page, the PDF and exports.

``form_html`` is a pure function of a :class:`clinic.visits.pmf.MonitoringForm`: its own Jinja
environment (autoescaped, strict about undefined names) reads ``visits/pmf_form.html`` with no
request, no session and no ``url_for``, so the staff page, the PDF download and the exports worker
all show the same words. ``render_pdf`` lays that HTML out with WeasyPrint in a font Debian ships
(DejaVu Sans, fonts-dejavu-core) and fetches nothing: a reference to anything outside the
document fails the rendering instead of reaching for the network.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from clinic.core.time import to_zone
from clinic.visits.pmf import FORM_CLASSES, MonitoringForm

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
SEXES = {"M": "Male", "F": "Female", "X": "X"}


@cache
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _helpers(form: MonitoringForm) -> dict[str, Any]:
    tz = form.setting.timezone

    def clock(at: datetime | None) -> str:
        return "—" if at is None else to_zone(at, tz).strftime("%H:%M")

    def stamp(at: datetime | None) -> str:
        return "—" if at is None else to_zone(at, tz).strftime("%m/%d/%Y %H:%M %Z")

    def us_date(on: date | None) -> str:
        return "—" if on is None else on.strftime("%m/%d/%Y")

    def yes_no(value: bool | None) -> str:
        return "—" if value is None else ("Yes" if value else "No")

    def box(ticked: bool) -> Markup:
        return Markup('<span class="box" aria-hidden="true">{}</span>').format("☒" if ticked else "☐")

    return {
        "f": form,
        "classes": FORM_CLASSES,
        "sex": SEXES.get(form.patient.sex or "", "not recorded"),
        "clock": clock,
        "stamp": stamp,
        "us_date": us_date,
        "yes_no": yes_no,
        "box": box,
        "zone": to_zone(form.session.started_at, tz).strftime("%Z"),
    }


def form_html(form: MonitoringForm) -> Markup:
    """The form as an HTML fragment (a ``<section>`` with its own scoped style)."""
    # The template is autoescaped: every value from the records is escaped as it is written.
    return Markup(_env().get_template("visits/pmf_form.html").render(**_helpers(form)))  # noqa: S704


def document_html(form: MonitoringForm) -> str:
    """A whole HTML document for print: the fragment, the page size and the font."""
    return _env().get_template("visits/pmf_document.html").render(body=form_html(form), **_helpers(form))


def pdf_filename(form: MonitoringForm) -> str:
    """No name in the file name: it shows in download lists and mail attachments."""
    return f"rems-monitoring-form-appointment-{form.appointment_id}-{form.session.treatment_date.isoformat()}.pdf"


def render_pdf(form: MonitoringForm) -> bytes:
    """The PDF a person would submit (or fax) to the REMS, with its text selectable and searchable."""
    # Imported here: loading Pango costs a moment, and only this function needs it.
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    fetcher = URLFetcher(allowed_protocols={"data"}, fail_on_errors=True)
    pdf = HTML(string=document_html(form), url_fetcher=fetcher).write_pdf()
    assert pdf is not None
    return bytes(pdf)
