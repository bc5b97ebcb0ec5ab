from __future__ import annotations

from typing import Any, ClassVar

import marshmallow as ma
from marshmallow import validate

from clinic.core.fields import (
    FILLED,
    AwareDateTime,
    ChartedTime,
    Date,
    DecimalString,
    Id,
    Milligrams,
    StrictBoolean,
    StrictSchema,
    format_mg,
)
from clinic.inventory.models import (
    ESCALATION_KINDS,
    AlertDecision,
    ContainerStatus,
    CountKind,
    DiscrepancyAction,
    DrugForm,
    DrugUnit,
    EntryKind,
    LossKind,
    LossReportStep,
    Schedule,
)
from clinic.inventory.witness import WitnessSignature
from clinic.locations.schemas import DeaNumber

#: a character str.strip() keeps, somewhere in the text: the OpenAPI document states it as a pattern
_not_blank = validate.Regexp(FILLED, error="Cannot be blank.")


_NDC = validate.Regexp(r"^\d{4,5}-\d{3,4}-\d{1,2}$", error="An NDC such as 42023-113-10.")


def _late_entry_reason() -> ma.fields.String:
    return ma.fields.String(
        load_default=None,
        validate=validate.Length(max=500),
        metadata={"description": "Why an entry is charted after the back-charting window (DEA-06)."},
    )


class CreateDrugSchema(StrictSchema):
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "description": "Refused (422) unless mg_per_unit x units_per_container is a whole microgram and "
        "at most 100000 mg a container (the catalog's bounds)."
    }
    name = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    ndc = ma.fields.String(required=True, validate=_NDC)
    schedule = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in Schedule]))
    form = ma.fields.String(required=True, validate=validate.OneOf([f.value for f in DrugForm]))
    unit = ma.fields.String(required=True, validate=validate.OneOf([u.value for u in DrugUnit]))
    mg_per_unit = DecimalString(
        scale=1000,
        digits=3,  # catalog.MAX_MG_PER_UNIT
        too_large="At most 1000 mg per unit.",
        required=True,
        data_key="mg_per_unit",
        attribute="ug_per_unit",
    )
    units_per_container = DecimalString(
        scale=1000,
        digits=3,  # catalog.MAX_UNITS_PER_CONTAINER
        too_large="At most 1000 units per container.",
        required=True,
        attribute="milliunits_per_container",
    )


class DrugSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    ndc = ma.fields.String(required=True)
    schedule = ma.fields.String(required=True)
    form = ma.fields.String(required=True)
    unit = ma.fields.String(required=True)
    mg_per_unit = DecimalString(scale=1000, digits=3, attribute="ug_per_unit", required=True)
    units_per_container = DecimalString(scale=1000, digits=3, attribute="milliunits_per_container", required=True)
    mg_per_container = Milligrams(attribute="container_ug", positive=False, required=True)


class DrugListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DrugSchema), required=True)


class ReceiveStockSchema(StrictSchema):
    late_entry_reason = _late_entry_reason()
    storage_site_id = Id(required=True)
    drug_id = Id(required=True)
    lot_number = ma.fields.String(required=True, validate=[validate.Length(min=1, max=40), _not_blank])
    expires_on = Date(required=True)
    container_count = ma.fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=500))
    supplier_name = ma.fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    supplier_address = ma.fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])
    supplier_dea_registration = DeaNumber(required=True)
    invoice_number = ma.fields.String(required=True, validate=[validate.Length(min=1, max=80), _not_blank])
    #: DEA-23: a Schedule II order's DEA Form 222 serial number or CSOS order number
    order_form_number = ma.fields.String(load_default=None, validate=[validate.Length(min=1, max=40), _not_blank])
    #: a second receipt of an invoice already received is confirmed on purpose
    confirm_repeat_invoice = StrictBoolean(load_default=False)
    occurred_at = ChartedTime(load_default=None)


class ContainerSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    storage_site_id = ma.fields.Integer(required=True)
    drug_id = ma.fields.Integer(required=True)
    lot_number = ma.fields.String(required=True)
    expires_on = Date(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in ContainerStatus]))
    initial_mg = Milligrams(attribute="initial_ug", positive=False, required=True)
    balance_mg = Milligrams(attribute="balance_ug", positive=False, required=True)
    unit = ma.fields.Function(lambda c: c.drug.unit, required=True)
    balance_units = ma.fields.Function(lambda c: format_mg(c.balance_ug * 1000 // c.drug.ug_per_unit), required=True)


class LedgerEntrySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    seq = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in EntryKind]))
    container_id = ma.fields.Integer(allow_none=True)
    drug_id = ma.fields.Integer(allow_none=True)
    quantity_mg = ma.fields.Function(lambda e: format_mg(abs(e.delta_ug)), required=True)
    delta_mg = Milligrams(attribute="delta_ug", positive=False, required=True)
    balance_after_mg = Milligrams(attribute="balance_after_ug", positive=False, allow_none=True)
    patient_id = ma.fields.Integer(allow_none=True)
    appointment_id = ma.fields.Integer(allow_none=True)
    actor_id = ma.fields.Integer(required=True)
    witness_id = ma.fields.Integer(allow_none=True)
    second_witness_id = ma.fields.Integer(allow_none=True)
    corrects_seq = ma.fields.Integer(allow_none=True)
    occurred_at = ma.fields.AwareDateTime(required=True)
    recorded_at = ma.fields.AwareDateTime(required=True)
    reason = ma.fields.String(allow_none=True)
    details = ma.fields.Dict(required=True)
    prev_hash = ma.fields.String(required=True)
    hash = ma.fields.String(required=True)


class ReceiptSchema(ma.Schema):
    containers = ma.fields.List(ma.fields.Nested(ContainerSchema), required=True)
    entries = ma.fields.List(ma.fields.Nested(LedgerEntrySchema), required=True)


class AdministrationSchema(StrictSchema):
    late_entry_reason = _late_entry_reason()
    container_id = Id(required=True)
    patient_id = Id(required=True)
    quantity_mg = Milligrams(required=True, attribute="quantity_ug")
    appointment_id = Id(load_default=None)
    administered_at = ChartedTime(load_default=None)


class WitnessFields(StrictSchema):
    witness_email = ma.fields.String(load_default=None, validate=validate.Length(max=254))
    witness_password = ma.fields.String(load_default=None, load_only=True, validate=validate.Length(max=1024))
    witness_totp_code = ma.fields.String(load_default=None, load_only=True, validate=validate.Regexp(r"^\d{6}$"))

    @ma.post_load
    def _witness(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The service takes the signature as one value; its errors still name these fields."""
        data["witness"] = WitnessSignature.from_fields(
            data.pop("witness_email"), data.pop("witness_password"), data.pop("witness_totp_code")
        )
        return data


class WasteSchema(WitnessFields):
    late_entry_reason = _late_entry_reason()
    #: the dose this is the remainder of; found by itself when one was drawn from the container today
    administration_seq = Id(load_default=None)
    no_administration_reason = ma.fields.String(load_default=None, validate=validate.Length(max=500))
    container_id = Id(required=True)
    quantity_mg = Milligrams(required=True, attribute="quantity_ug")
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    patient_id = Id(load_default=None)
    occurred_at = ChartedTime(load_default=None)


class TransferSchema(StrictSchema):
    late_entry_reason = _late_entry_reason()
    container_id = Id(required=True)
    to_storage_site_id = Id(required=True)
    occurred_at = ChartedTime(load_default=None)


class LossSchema(WitnessFields):
    late_entry_reason = _late_entry_reason()
    container_id = Id(required=True)
    quantity_mg = Milligrams(required=True, attribute="quantity_ug")
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in LossKind]))
    description = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    occurred_at = ChartedTime(load_default=None)
    discovered_at = ChartedTime(
        load_default=None, metadata={"description": "Default now. Refused (422) if before occurred_at."}
    )


class ReverseDistributorSchema(StrictSchema):
    name = ma.fields.String(required=True, validate=[validate.Length(min=1, max=200), _not_blank])
    address = ma.fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])
    dea_registration = DeaNumber(required=True)


class DisposalSchema(WitnessFields):
    late_entry_reason = _late_entry_reason()
    container_id = Id(required=True)
    method = ma.fields.String(required=True, validate=validate.Length(min=1, max=200))
    second_witness_email = ma.fields.String(load_default=None, validate=validate.Length(max=254))
    second_witness_password = ma.fields.String(load_default=None, load_only=True, validate=validate.Length(max=1024))
    reverse_distributor = ma.fields.Nested(ReverseDistributorSchema, load_default=None)
    #: free text beside the listed method (DEA-45): the kit used, the lot of the agent, ...
    method_note = ma.fields.String(load_default=None, validate=validate.Length(max=500))
    occurred_at = ChartedTime(load_default=None)

    @ma.post_load
    def _second_witness(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data["second_witness"] = WitnessSignature.from_fields(
            data.pop("second_witness_email"), data.pop("second_witness_password")
        )
        return data


class CorrectionSchema(WitnessFields):
    late_entry_reason = _late_entry_reason()
    location_id = Id(required=True)
    corrects_seq = Id(required=True)
    reason = ma.fields.String(required=True, validate=validate.Length(min=1, max=500))
    #: what an administration, waste or loss really was; omitted, the entry is undone
    corrected_quantity_mg = Milligrams(load_default=None, positive=False, attribute="corrected_quantity_ug")
    occurred_at = ChartedTime(load_default=None)


class CountLineSchema(StrictSchema):
    container_id = Id(required=True)
    counted_mg = Milligrams(required=True, positive=False, attribute="counted_ug")
    exact = StrictBoolean(load_default=True)


class CountSchema(WitnessFields):
    #: DEA-16: an initial or biennial inventory says whether it was taken at opening or close
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["kind"], "properties": {"kind": {"enum": [CountKind.shift.value]}}},
            {
                "required": ["business_hours"],
                "properties": {"business_hours": {"type": "string", "enum": ["opening", "close"]}},
            },
        ]
    }
    late_entry_reason = _late_entry_reason()
    location_id = Id(required=True)
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in CountKind]))
    business_hours = ma.fields.String(load_default=None, validate=validate.OneOf(["opening", "close"]))
    lines = ma.fields.List(ma.fields.Nested(CountLineSchema), required=True, validate=validate.Length(max=5000))
    occurred_at = ChartedTime(load_default=None)


class DiscrepancyOutSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    container_id = ma.fields.Integer(required=True)
    expected_mg = Milligrams(attribute="expected_ug", positive=False, required=True)
    counted_mg = Milligrams(attribute="counted_ug", positive=False, required=True)
    difference_mg = Milligrams(attribute="difference_ug", positive=False, required=True)
    status = ma.fields.String(required=True)
    resolution = ma.fields.String(allow_none=True)


class CountResultSchema(ma.Schema):
    id = ma.fields.Function(lambda r: r.count.id, required=True)
    kind = ma.fields.Function(lambda r: r.count.kind, required=True)
    entry_id = ma.fields.Function(lambda r: r.count.entry_id, required=True)
    discrepancies = ma.fields.List(ma.fields.Nested(DiscrepancyOutSchema), required=True)


class ResolveDiscrepancySchema(WitnessFields):
    action = ma.fields.String(required=True, validate=validate.OneOf([a.value for a in DiscrepancyAction]))
    explanation = ma.fields.String(required=True, validate=validate.Length(min=1, max=1000))
    loss_kind = ma.fields.String(
        load_default=LossKind.loss.value, validate=validate.OneOf([k.value for k in ESCALATION_KINDS])
    )


class LedgerQuerySchema(StrictSchema):
    location_id = Id(load_default=None, strict=False)
    since = AwareDateTime(load_default=None)
    until = AwareDateTime(load_default=None)
    kind = ma.fields.String(load_default=None, validate=validate.OneOf([k.value for k in EntryKind]))
    container_id = Id(load_default=None, strict=False)
    drug_id = Id(load_default=None, strict=False)
    schedule = ma.fields.String(load_default=None, validate=validate.OneOf([s.value for s in Schedule]))
    cursor = ma.fields.String(load_default=None, validate=validate.Regexp(r"^\d{1,9}$"))
    limit = ma.fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class LedgerPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LedgerEntrySchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class BalanceQuerySchema(StrictSchema):
    location_id = Id(required=True, strict=False)


class DrugBalanceSchema(ma.Schema):
    drug_id = ma.fields.Integer(required=True)
    drug_name = ma.fields.String(required=True)
    balance_mg = Milligrams(attribute="balance_ug", positive=False, required=True)
    containers = ma.fields.Integer(required=True)


class DiscrepancyAlertSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    raised_at = ma.fields.AwareDateTime(required=True)
    discrepancy_ids = ma.fields.List(ma.fields.Integer(), required=True)
    rule = ma.fields.Dict(required=True)
    decision = ma.fields.String(allow_none=True)
    reason = ma.fields.String(allow_none=True)
    resolved_by_id = ma.fields.Integer(allow_none=True)
    resolved_at = ma.fields.AwareDateTime(allow_none=True)


class ResolveAlertSchema(StrictSchema):
    decision = ma.fields.String(required=True, validate=validate.OneOf([d.value for d in AlertDecision]))
    reason = ma.fields.String(required=True, validate=[validate.Length(min=1, max=1000), _not_blank])


class BalancesSchema(ma.Schema):
    location_id = ma.fields.Integer(required=True)
    next_inventory_due_on = Date(allow_none=True, required=True)
    #: the next full inventory (DEA-15, DEA-22) is past due at the location
    inventory_overdue = StrictBoolean(required=True)
    #: DEA-35: a continuing pattern of small unexplained shortages is significant
    small_discrepancy_pattern = StrictBoolean(required=True)
    #: the open pattern alert a prescriber or admin resolves, if any
    discrepancy_alert = ma.fields.Nested(DiscrepancyAlertSchema, allow_none=True, required=True)
    drugs = ma.fields.List(ma.fields.Nested(DrugBalanceSchema), required=True)
    containers = ma.fields.List(ma.fields.Nested(ContainerSchema), required=True)


def page(items: list[Any], limit: int) -> dict[str, Any]:
    return {"items": items, "next_cursor": str(items[-1].id) if len(items) == limit else None}


class LossReportSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    location_id = ma.fields.Integer(required=True)
    entry_id = ma.fields.Integer(required=True)
    kind = ma.fields.String(required=True)
    discovered_at = ma.fields.AwareDateTime(required=True)
    notice_due_at = ma.fields.AwareDateTime(required=True)
    filing_due_on = Date(required=True)
    notified_at = ma.fields.AwareDateTime(allow_none=True)
    filed_at = ma.fields.AwareDateTime(allow_none=True)
    form = ma.fields.Dict(required=True)
    board_notice_due_on = Date(allow_none=True)
    board_notified_at = ma.fields.AwareDateTime(allow_none=True)


class LossReportListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(LossReportSchema), required=True)


class LossReportQuerySchema(StrictSchema):
    location_id = Id(load_default=None, strict=False)


class LossReportStepSchema(StrictSchema):
    step = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in LossReportStep]))
    occurred_at = ChartedTime(load_default=None)
