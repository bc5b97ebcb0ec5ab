"""The exports API (CONTRACT.md ``POST /exports``): thin, every rule in the service."""

from __future__ import annotations

import json
from typing import Any

from flask import send_file
from flask.views import MethodView

from clinic.auth.policy import current_actor, require
from clinic.core import signing
from clinic.core.errors import NotFound
from clinic.exports import service
from clinic.exports.schemas import (
    DisclosureListSchema,
    DisclosureQuerySchema,
    ExportListSchema,
    ExportRequestSchema,
    ExportSchema,
    SigningKeySchema,
)
from clinic.exports.verifier import fingerprint
from clinic.extensions import Blueprint

blp = Blueprint("exports_api", __name__, url_prefix="/api/v1", description="Auditor exports")


@blp.route("/exports")
class Exports(MethodView):
    @require("exports.view")
    @blp.response(200, ExportListSchema)
    def get(self) -> dict[str, Any]:
        return {"items": service.list_exports(current_actor())}

    @require("exports.create")
    @blp.arguments(ExportRequestSchema)
    @blp.response(202, ExportSchema)
    def post(self, args: dict[str, Any]) -> Any:
        since, until = service.period(args.pop("since"), args.pop("until"), args.get("location_id"))
        return service.request_export(
            actor=current_actor(), file_format=args.pop("format"), since=since, until=until, **args
        )


@blp.route("/exports/<int:export_id>")
class ExportById(MethodView):
    @require("exports.view")
    @blp.response(200, ExportSchema)
    def get(self, export_id: int) -> Any:
        return service.get_export(export_id, current_actor())


#: a download of any format: the bundle's files are bytes the verifier hashes
BINARY = {"type": "string", "format": "binary"}
OCTETS = "application/octet-stream"


@blp.route("/exports/<int:export_id>/file")
class ExportFile(MethodView):
    @require("exports.view")
    @blp.response(200, BINARY, content_type=OCTETS)
    def get(self, export_id: int) -> Any:
        export = service.get_export(export_id, current_actor())
        path = service.file_path(export)
        return send_file(path, mimetype=OCTETS, as_attachment=True, download_name=path.name)


@blp.route("/exports/<int:export_id>/manifest")
class ExportManifest(MethodView):
    @require("exports.view")
    @blp.response(200, {"type": "object"})
    def get(self, export_id: int) -> Any:
        export = service.get_export(export_id, current_actor())
        path = service.file_path(export, "manifest")
        return send_file(path, mimetype="application/json", as_attachment=True, download_name=path.name)


@blp.route("/exports/<int:export_id>/files/<string:name>")
class ExportPart(MethodView):
    """The bundle's other files the manifest names (left-out rows, a PDF's rows)."""

    @require("exports.view")
    @blp.response(200, BINARY, content_type=OCTETS)
    def get(self, export_id: int, name: str) -> Any:
        export = service.get_export(export_id, current_actor())
        manifest_path = service.file_path(export, "manifest")
        names = {f["name"] for f in json.loads(manifest_path.read_text())["files"]}
        if name not in names:
            raise NotFound("No such file in this export")
        return send_file(manifest_path.with_name(name), mimetype=OCTETS, as_attachment=True, download_name=name)


@blp.route("/exports/signing-key")
class SigningKey(MethodView):
    @require("exports.view")
    @blp.response(200, SigningKeySchema)
    def get(self) -> dict[str, str]:
        key = signing.public_key_hex()
        return {"public_key": key, "fingerprint": fingerprint(key)}


@blp.route("/patients/<int:patient_id>/disclosures")
class PatientDisclosures(MethodView):
    @require("disclosures.view")
    @blp.arguments(DisclosureQuerySchema, location="query")
    @blp.response(200, DisclosureListSchema)
    def get(self, args: dict[str, Any], patient_id: int) -> dict[str, Any]:
        since, until = service.period(args["since"], args["until"], None)
        return {"items": service.list_disclosures(patient_id, since, until)}
