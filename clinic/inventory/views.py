"""The ledger's staff pages: the safe, the movement forms, the count sheet, the discrepancy queue
and the ledger browser.

Thin, like the API beside it: a form is loaded with the API's own input schema, one service
function runs as the request's one unit of work, and the page then redirects (post/redirect/get)
or comes back with the errors beside the fields and the typed values kept. A refused action
writes nothing (only the record of a witness's failed sign-in, which throttling counts, is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from clinic.auth.policy import allowed, client_addr, current_actor, require
from clinic.core import replica, tx
from clinic.core.errors import DomainError
from clinic.core.fields import format_mg, id_arg
from clinic.core.time import OFF_THE_CALENDAR
from clinic.inventory import queries, service
from clinic.inventory.corrections import REFUSED
from clinic.inventory.models import CountKind, DrugForm, DrugUnit, EntryKind, LossKind, Schedule
from clinic.inventory.schemas import (
    CountSchema,
    CreateDrugSchema,
    LedgerQuerySchema,
    LossSchema,
    ReceiveStockSchema,
    ResolveAlertSchema,
    ResolveDiscrepancySchema,
    TransferSchema,
    WasteSchema,
)
from clinic.web.forms import CHECKED, form_page, form_payload, refused

bp = Blueprint("inventory_ui", __name__, url_prefix="/inventory", template_folder="templates")


LEDGER_PAGE_SIZE = 50
LOSS_KINDS = tuple(k.value for k in LossKind)
_COUNTED = re.compile(r"^counted_(mg|devices)-(\d{1,18})$")
_LINE_ERROR = re.compile(r"^lines\.(\d+)\.(\w+)$")


# --- template filters (the display edge: micrograms to mg, UTC to the location's zone) ----------


@bp.app_template_filter("mg")
def mg(ug: int | None) -> str:
    return "—" if ug is None else format_mg(ug)


@bp.app_template_filter("signed_mg")
def signed_mg(ug: int) -> str:
    return f"+{format_mg(ug)}" if ug > 0 else format_mg(ug).replace("-", "\u2212")  # a true minus sign


@bp.app_template_filter("local_time")
def local_time(at: datetime | None, tz: str) -> str:
    return "—" if at is None else at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


# --- parsing and the one unit of work --------------------------------------------------------------


def _location_id() -> int | None:
    return request.args.get("location_id", type=id_arg)


def _back_to_safe(where: queries.Where) -> Any:
    return redirect(url_for(".safe", location_id=where.location.id if where.location else None))


# --- the safe ----------------------------------------------------------------------------------


@bp.get("/")
@require("inventory.view")
def safe() -> Any:
    show_all = request.args.get("show") == "all"
    return render_template(
        "inventory/safe.html",
        page=queries.overview(_location_id(), show_all=show_all),
        show_all=show_all,
        form={},
        errors={},
        error=None,
    )


# --- the drug catalog: everyone who sees the safe reads it; an administrator adds to it ----------

DRUG_CHOICES = {
    "schedules": [(s.value, s.value) for s in Schedule],
    "forms": [(f.value, f.value.replace("_", " ")) for f in DrugForm],
    "units": [(u.value, u.value) for u in DrugUnit],
}


def _catalog() -> dict[str, Any]:
    return {"where": queries.where(_location_id()), "drugs": service.list_drugs(), **DRUG_CHOICES}


@bp.get("/drugs")
@require("inventory.view")
def drugs() -> Any:
    return form_page("inventory/drugs.html", **_catalog())


@bp.post("/drugs")
@require("catalog.manage")
def create_drug() -> Any:
    schema = CreateDrugSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        drug = tx.attempt(lambda: service.create_drug(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/drugs.html", exc, **_catalog())
    flash(f"{drug.name} (NDC {drug.ndc}) added to the catalog.", "success")
    return redirect(url_for(".drugs", location_id=_location_id()))


# --- receiving a shipment ------------------------------------------------------------------------


@bp.get("/receive")
@require("inventory.receive")
def receive_form() -> Any:
    return form_page("inventory/receive.html", stock=queries.stock(_location_id()))


@bp.post("/receive")
@require("inventory.receive")
def receive_stock() -> Any:
    where = queries.where(_location_id())
    schema = ReceiveStockSchema()
    try:
        args = schema.load(form_payload(schema, where.timezone, request.form))
        receipt = tx.attempt(lambda: service.receive_stock(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/receive.html", exc, stock=queries.stock(_location_id()))
    first, last = receipt.entries[0], receipt.entries[-1]
    flash(
        f"Received {len(receipt.entries)} container(s) of lot {args['lot_number']} "
        f"(ledger #{first.seq} to #{last.seq}).",
        "success",
    )
    return _back_to_safe(where)


# --- waste with a witness on the same screen -------------------------------------------------------


@bp.get("/waste")
@require("inventory.waste")
def waste_form() -> Any:
    return form_page("inventory/waste.html", stock=queries.stock(_location_id()))


@bp.post("/waste")
@require("inventory.waste")
def record_waste() -> Any:
    where = queries.where(_location_id())
    schema = WasteSchema()
    try:
        args = schema.load(form_payload(schema, where.timezone, request.form))
        entry = tx.attempt(lambda: service.record_waste(actor=current_actor(), client_addr=client_addr(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/waste.html", exc, stock=queries.stock(_location_id()))
    flash(
        f"Waste of {format_mg(-entry.delta_ug)} mg from container #{entry.container_id} recorded "
        f"(ledger #{entry.seq}; {format_mg(entry.balance_after_ug or 0)} mg left).",
        "success",
    )
    return _back_to_safe(where)


# --- transfer between storage sites --------------------------------------------------------------


@bp.get("/transfer")
@require("inventory.transfer")
def transfer_form() -> Any:
    return form_page("inventory/transfer.html", stock=queries.stock(_location_id()))


@bp.post("/transfer")
@require("inventory.transfer")
def record_transfer() -> Any:
    where = queries.where(_location_id())
    schema = TransferSchema()
    try:
        args = schema.load(form_payload(schema, where.timezone, request.form))
        entry = tx.attempt(lambda: service.record_transfer(actor=current_actor(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/transfer.html", exc, stock=queries.stock(_location_id()))
    flash(f"Container #{entry.container_id} moved (ledger #{entry.seq}).", "success")
    return _back_to_safe(where)


# --- theft, loss, breakage, spill -------------------------------------------------------------------


@bp.get("/loss")
@require("inventory.loss")
def loss_form() -> Any:
    return form_page("inventory/loss.html", stock=queries.stock(_location_id()), loss_kinds=LOSS_KINDS)


@bp.post("/loss")
@require("inventory.loss")
def record_loss() -> Any:
    where = queries.where(_location_id())
    schema = LossSchema()
    try:
        args = schema.load(form_payload(schema, where.timezone, request.form))
        entry = tx.attempt(lambda: service.record_loss(actor=current_actor(), client_addr=client_addr(), **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/loss.html", exc, stock=queries.stock(_location_id()), loss_kinds=LOSS_KINDS)
    flash(
        f"{args['kind'].capitalize()} of {format_mg(-entry.delta_ug)} mg from container #{entry.container_id} "
        f"recorded (ledger #{entry.seq}).",
        "success",
    )
    return _back_to_safe(where)


# --- the count sheet -----------------------------------------------------------------------------


def _devices_to_mg(value: str, ug_per_unit: int) -> str:
    """A device count ("1", "0.5" for one spray of two left) as the mg CountSchema reads. Anything
    that is not a plain decimal is passed on for the schema to refuse in its own words."""
    try:
        devices = Decimal(value.strip())
    except InvalidOperation:
        return value
    if not devices.is_finite():
        return value
    return format(devices * ug_per_unit / 1000, "f")


def _count_body(
    form: Mapping[str, str], location_id: int | None, tz: str, devices: Mapping[int, int]
) -> tuple[dict[str, Any], list[str]]:
    """The sheet as CountSchema's JSON: one line per container given a counted amount (blank lines
    are not counted), ``exact-<id>`` checkboxes as booleans. A device drug's line is counted in
    devices (``counted_devices-<id>``; ``devices`` maps such containers to micrograms per device)
    and carried in mg. Also each line's form field, for the errors to go back to."""
    lines: list[dict[str, Any]] = []
    fields: list[str] = []
    for key, value in form.items():
        m = _COUNTED.match(key)
        if not m or value == "":
            continue
        cid = int(m.group(2))
        if m.group(1) == "devices":
            if cid not in devices:
                raise ValidationError({key: ["Not a device drug on hand here."]})
            value = _devices_to_mg(value, devices[cid])
        lines.append({"container_id": cid, "counted_mg": value, "exact": form.get(f"exact-{cid}") in CHECKED})
        fields.append(key)
    rest = {k: v for k, v in form.items() if not k.startswith(("counted_mg-", "counted_devices-", "exact-"))}
    return {**form_payload(CountSchema(), tz, rest), "location_id": location_id, "lines": lines}, fields


def _line_errors(
    lines: list[dict[str, Any]], fields: list[str]
) -> Callable[[dict[str, list[str]]], dict[str, list[str]]]:
    """``lines.<i>.<field>`` (schema and service) -> the sheet's ``counted_mg-<id>`` (or
    ``counted_devices-<id>``) and ``exact-<id>``."""

    def rename(errors: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, messages in errors.items():
            m = _LINE_ERROR.match(key)
            if m and int(m.group(1)) < len(lines):
                i = int(m.group(1))
                key = f"exact-{lines[i]['container_id']}" if m.group(2) == "exact" else fields[i]
                if key.startswith("counted_devices-"):
                    messages = [DEVICE_HINTS.get(msg, msg) for msg in messages]
            out[key] = out.get(key, []) + messages
        return out

    return rename


#: the schema's words are about mg; a line counted in devices reads them in its own unit
DEVICE_HINTS = {
    "At most three decimal places (1 microgram).": "Count whole devices, or a fraction of one (0.5).",
    "More than the container can hold.": "More devices than the container holds.",
}


def _device_containers(stock: queries.Stock) -> dict[int, int]:
    return {c.id: c.drug.ug_per_unit for c in stock.to_count if c.drug.unit == DrugUnit.device}


@bp.get("/count")
@require("inventory.count")
def count_form() -> Any:
    return form_page("inventory/count.html", stock=queries.stock(_location_id()), kinds=list(CountKind))


@bp.post("/count")
@require("inventory.count")
def reconcile_count() -> Any:
    stock = queries.stock(_location_id())
    where = stock.where
    body: dict[str, Any] = {"lines": []}
    fields: list[str] = []
    try:
        body, fields = _count_body(
            request.form, where.location.id if where.location else None, where.timezone, _device_containers(stock)
        )
        args = CountSchema().load(body)
        lines = args.pop("lines")
        result = tx.attempt(
            lambda: service.reconcile_count(actor=current_actor(), client_addr=client_addr(), lines=lines, **args)
        )
    except (ValidationError, DomainError) as exc:
        return refused(
            "inventory/count.html",
            exc,
            rename=_line_errors(body["lines"], fields),
            stock=queries.stock(_location_id()),
            kinds=list(CountKind),
        )
    flash(
        f"{result.count.kind.capitalize()} count recorded; {len(result.discrepancies)} container(s) "
        "differ from the books.",
        "success",
    )
    return redirect(url_for(".discrepancies", location_id=result.count.location_id, count_id=result.count.id))


# --- the discrepancy queue -------------------------------------------------------------------------


def _queue() -> queries.Queue:
    return queries.queue(_location_id(), count_id=request.args.get("count_id", type=id_arg))


@bp.get("/discrepancies")
@require("inventory.view")
def discrepancies() -> Any:
    return render_template("inventory/discrepancies.html", page=_queue(), form={}, errors={}, error=None)


@bp.post("/discrepancies/<int:discrepancy_id>/resolve")
@require("inventory.resolve")
def resolve_discrepancy(discrepancy_id: int) -> Any:
    schema = ResolveDiscrepancySchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        disc = tx.attempt(
            lambda: service.resolve_discrepancy(
                actor=current_actor(), discrepancy_id=discrepancy_id, client_addr=client_addr(), **args
            )
        )
    except (ValidationError, DomainError) as exc:
        return refused("inventory/discrepancies.html", exc, page=_queue(), failed_id=discrepancy_id)
    flash(f"Discrepancy #{disc.id} {disc.status}.", "success")
    return redirect(url_for(".discrepancies", location_id=_location_id(), count_id=request.args.get("count_id")))


@bp.post("/discrepancy-alerts/<int:alert_id>/resolve")
@require("inventory.resolve")
def resolve_alert(alert_id: int) -> Any:
    schema = ResolveAlertSchema()
    try:
        args = schema.load(form_payload(schema, "UTC", request.form))
        tx.attempt(lambda: service.resolve_alert(actor=current_actor(), alert_id=alert_id, **args))
    except (ValidationError, DomainError) as exc:
        return refused("inventory/safe.html", exc, page=queries.overview(_location_id()))
    flash("The pattern alert is resolved and the decision recorded.", "success")
    return redirect(url_for(".safe", location_id=_location_id()))


# --- the ledger browser ------------------------------------------------------------------------


def _day_bounds(query: dict[str, str], tz: str) -> dict[str, str]:
    """``since``/``until`` as the location's calendar days: from the start of ``since`` to the end
    of ``until`` (the service's ``until`` is exclusive). A value that is not a date is left for the
    schema to refuse; one at the end of the calendar is refused here."""
    out = dict(query)
    for key, shift in (("since", 0), ("until", 1)):
        try:
            day = date.fromisoformat(query[key])
        except (KeyError, ValueError):
            continue
        try:
            out[key] = datetime.combine(day + timedelta(days=shift), time(0), tzinfo=ZoneInfo(tz)).isoformat()
        except OverflowError:  # the day after 9999-12-31: a form error, as the schema's own would be
            raise ValidationError({key: [OFF_THE_CALENDAR]}) from None
    return out


@bp.get("/ledger")
@require("inventory.view")
@replica.reading  # a long ledger read may go to CLINIC_REPLICA_URL, as the API's listing does
def ledger() -> Any:
    where = queries.where(_location_id())
    filters = {k: v for k, v in request.args.items() if v != "" and k != "cursor"}
    context: dict[str, Any] = {"where": where, "form": filters, "kinds": list(EntryKind), "page_size": LEDGER_PAGE_SIZE}
    schema = LedgerQuerySchema()
    try:
        query = _day_bounds({"limit": str(LEDGER_PAGE_SIZE), **request.args.to_dict()}, where.timezone)
        args = schema.load(
            {
                **form_payload(schema, where.timezone, query),
                "location_id": where.location.id if where.location else None,
            }
        )
    except ValidationError as exc:
        return refused("inventory/ledger.html", exc, page=None, **context)
    with_patients = allowed(current_actor(), "patients.view")
    # No location to show (a user of none): no query at all, rather than every location's entries
    page = queries.ledger_page(**args, with_patients=with_patients) if where.location is not None else None
    return render_template(
        "inventory/ledger.html",
        page=page,
        cursor=args["cursor"],
        errors={},
        uncorrectable=REFUSED,
        **context,
    )
