"""Auditor pages: request an export, follow it, download the bundle; a patient's disclosures.
Thin: parse, one service call, render or redirect."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from sqlalchemy import select

from clinic.auth import scope
from clinic.auth.policy import current_actor, require
from clinic.core import signing, tx
from clinic.core.errors import DomainError, NotFound
from clinic.exports import service
from clinic.exports.models import ExportStatus, PurposeKind
from clinic.exports.schemas import ExportRequestSchema
from clinic.exports.verifier import KINDS, PROFILES, fingerprint
from clinic.extensions import db
from clinic.inventory.models import Drug
from clinic.patients.models import Patient
from clinic.web.forms import refused

bp = Blueprint("exports_ui", __name__, template_folder="templates")

LABELS = {
    "dispensing-log": "Dispensing log (DEA-26)",
    "receiving-log": "Receiving log",
    "waste-log": "Waste log, with witnesses",
    "loss-log": "Theft and loss log, with Form 106 data",
    "disposal-log": "Disposals, with Form 41 data",
    "inventory": "Initial and biennial inventories",
    "ledger": "Whole ledger",
    "access-log": "Access log",
    "audit-trail": "Audit trail",
}


def _context() -> dict[str, Any]:
    actor = current_actor()
    key = signing.public_key_hex()
    exports = service.list_exports(actor)
    return {
        "kinds": [(k, LABELS[k]) for k in KINDS],
        "profiles": list(PROFILES),
        "purposes": [p.value for p in PurposeKind],
        "locations": scope.my_locations(current_actor()),
        "drugs": list(db.session.scalars(select(Drug).order_by(Drug.name))),
        "exports": exports,
        "running": any(e.status in (ExportStatus.queued, ExportStatus.running) for e in exports),
        "fingerprint": fingerprint(key),
        "public_key": key,
    }


@bp.get("/exports")
@require("exports.view")
def index() -> Any:
    return render_template("exports/index.html", form=request.args.to_dict(), errors={}, error=None, **_context())


@bp.post("/exports")
@require("exports.create")
def create() -> Any:
    raw: dict[str, Any] = {k: v for k, v in request.form.items() if k != "csrf_token" and v.strip() != ""}
    for key in ("location_id", "drug_id"):  # a form sends text; the API's schema wants numbers
        if str(raw.get(key, "")).isdigit():
            raw[key] = int(raw[key])
    try:
        args = ExportRequestSchema().load(raw)
        since, until = service.period(args.pop("since"), args.pop("until"), args.get("location_id"))
        export = tx.attempt(
            lambda: service.request_export(
                actor=current_actor(), file_format=args.pop("format"), since=since, until=until, **args
            )
        )
    except (ma.ValidationError, DomainError) as exc:
        return refused("exports/index.html", exc, **_context())
    flash(f"Export #{export.id} is {export.status}.", "success" if export.status != "failed" else "error")
    return redirect(url_for(".index"))


def _download(export_id: int, part: str, name: str | None = None) -> Any:
    export = service.get_export(export_id, current_actor())
    path = service.file_path(export, "file" if part == "file" else "manifest")
    if part == "part":
        names = {f["name"] for f in json.loads(path.read_text())["files"]}
        if name not in names:
            raise NotFound("No such file in this export")
        path = path.with_name(str(name))
    return send_file(path, as_attachment=True, download_name=path.name)


@bp.get("/exports/<int:export_id>/file")
@require("exports.view")
def download(export_id: int) -> Any:
    return _download(export_id, "file")


@bp.get("/exports/<int:export_id>/manifest")
@require("exports.view")
def manifest(export_id: int) -> Any:
    return _download(export_id, "manifest")


@bp.get("/exports/<int:export_id>/files/<string:name>")
@require("exports.view")
def part(export_id: int, name: str) -> Any:
    return _download(export_id, "part", name)


@bp.get("/patients/<int:patient_id>/disclosures")
@require("disclosures.view")
def disclosures(patient_id: int) -> Any:
    patient = db.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient")
    since, until = request.args.get("since", ""), request.args.get("until", "")
    rows, errors = [], {}
    if since and until:
        try:
            rows = service.list_disclosures(patient_id, *service.period(since, until, None))
        except DomainError as exc:
            errors = exc.errors or {"until": [exc.detail]}
    return render_template(
        "exports/disclosures.html", patient=patient, rows=rows, since=since, until=until, errors=errors
    )
