"""Stock leaving the inventory and entries corrected, on pages: a return to a reverse distributor
(DEA-43/44), an on-site destruction with its two witnesses (DEA-45/46), and a correction started
from a ledger row (SYS-01: reason required, the new entry and the one it corrects linked both ways
on the ledger page).

The same shape as clinic.inventory.views (whose blueprint these routes join): the API's schema, the
API's service and permission, one unit of work, post/redirect/get or the form again with its errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import abort, flash, redirect, request, url_for
from marshmallow import ValidationError
from sqlalchemy import select

from clinic.auth.policy import client_addr, current_actor, require
from clinic.core import tx
from clinic.core.errors import DomainError
from clinic.core.fields import format_mg, id_arg
from clinic.extensions import db
from clinic.inventory import queries, service
from clinic.inventory.corrections import OUTFLOWS, REFUSED
from clinic.inventory.models import LedgerEntry
from clinic.inventory.records import NON_RETRIEVABLE_METHODS
from clinic.inventory.schemas import CorrectionSchema, DisposalSchema
from clinic.inventory.views import bp
from clinic.web.forms import form_page, form_payload, refused

#: the reverse distributor's fields on the form, flat (the API nests them)
_DISTRIBUTOR = {"rd_name": "name", "rd_address": "address", "rd_dea_registration": "dea_registration"}


def _location_id() -> int | None:
    return request.args.get("location_id", type=id_arg)


def _disposal_body(form: Mapping[str, str], tz: str, *, returned: bool) -> dict[str, Any]:
    body = form_payload(DisposalSchema(), tz, {k: v for k, v in form.items() if k not in _DISTRIBUTOR})
    if returned:
        body["reverse_distributor"] = {api: form.get(field, "") for field, api in _DISTRIBUTOR.items()}
    return body


def _rename_distributor(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    back = {f"reverse_distributor.{api}": field for field, api in _DISTRIBUTOR.items()}
    return {back.get(key, key): messages for key, messages in errors.items()}


def _dispose(template: str, *, returned: bool, done: str) -> Any:
    where = queries.where(_location_id())
    schema = DisposalSchema()
    try:
        args = schema.load(_disposal_body(request.form, where.timezone, returned=returned))
        entry = tx.attempt(lambda: service.record_disposal(actor=current_actor(), client_addr=client_addr(), **args))
    except (ValidationError, DomainError) as exc:
        return refused(
            template,
            exc,
            rename=_rename_distributor,
            stock=queries.stock(_location_id()),
            methods=NON_RETRIEVABLE_METHODS,
        )
    flash(f"Container #{entry.container_id} {done} (ledger #{entry.seq}).", "success")
    return redirect(url_for(".safe", location_id=where.location.id if where.location else None))


@bp.get("/return")
@require("inventory.dispose")
def return_form() -> Any:
    return form_page("inventory/return.html", stock=queries.stock(_location_id()), methods=NON_RETRIEVABLE_METHODS)


@bp.post("/return")
@require("inventory.dispose")
def record_return() -> Any:
    return _dispose("inventory/return.html", returned=True, done="returned to the reverse distributor")


@bp.get("/destroy")
@require("inventory.dispose")
def destroy_form() -> Any:
    return form_page("inventory/destroy.html", stock=queries.stock(_location_id()), methods=NON_RETRIEVABLE_METHODS)


@bp.post("/destroy")
@require("inventory.dispose")
def record_destruction() -> Any:
    return _dispose("inventory/destroy.html", returned=False, done="destroyed on site")


# --- a correction, from a ledger row ---------------------------------------------------------------


def _entry(location_id: int, seq: int) -> LedgerEntry:
    entry = db.session.scalar(select(LedgerEntry).where(LedgerEntry.location_id == location_id, LedgerEntry.seq == seq))
    if entry is None:
        abort(404)
    return entry


def _correction_context(seq: int) -> dict[str, Any]:
    where = queries.where(_location_id())
    if where.location is None:
        abort(404)
    entry = _entry(where.location.id, seq)
    return {
        "where": where,
        "entry": entry,
        "names": queries.user_names((entry.actor_id, entry.witness_id)),
        "has_quantity": entry.kind in OUTFLOWS,
        "refused_kind": REFUSED.get(entry.kind),
    }


@bp.get("/ledger/<int:seq>/correct")
@require("inventory.correct")
def correction_form(seq: int) -> Any:
    return form_page("inventory/correct.html", **_correction_context(seq))


@bp.post("/ledger/<int:seq>/correct")
@require("inventory.correct")
def record_correction(seq: int) -> Any:
    from clinic.visits.service import check_correction

    context = _correction_context(seq)
    location_id = context["where"].location.id
    schema = CorrectionSchema()
    try:
        body = form_payload(schema, context["where"].timezone, request.form)
        args = schema.load({**body, "location_id": location_id, "corrects_seq": seq})
        check_correction(location_id=location_id, corrects_seq=seq)
        entry = tx.attempt(lambda: service.record_correction(actor=current_actor(), client_addr=client_addr(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/correct.html", exc, **context)
    flash(f"Ledger #{seq} corrected by #{entry.seq} ({format_mg(entry.delta_ug)} mg).", "success")
    return redirect(url_for(".ledger", location_id=location_id, container_id=entry.container_id))
