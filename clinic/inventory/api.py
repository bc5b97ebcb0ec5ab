"""The ledger API (CONTRACT.md /inventory, /drugs). Thin: parse, call one service function, dump."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from clinic.auth import scope
from clinic.auth.policy import client_addr, current_actor, require
from clinic.core import replica
from clinic.core.idempotency import idempotent
from clinic.extensions import Blueprint
from clinic.inventory import service
from clinic.inventory.schemas import (
    AdministrationSchema,
    BalanceQuerySchema,
    BalancesSchema,
    ContainerSchema,
    CorrectionSchema,
    CountResultSchema,
    CountSchema,
    CreateDrugSchema,
    DiscrepancyAlertSchema,
    DiscrepancyOutSchema,
    DisposalSchema,
    DrugListSchema,
    DrugSchema,
    LedgerEntrySchema,
    LedgerPageSchema,
    LedgerQuerySchema,
    LossReportListSchema,
    LossReportQuerySchema,
    LossReportSchema,
    LossReportStepSchema,
    LossSchema,
    ReceiptSchema,
    ReceiveStockSchema,
    ResolveAlertSchema,
    ResolveDiscrepancySchema,
    TransferSchema,
    WasteSchema,
    page,
)

blp = Blueprint("inventory_api", __name__, url_prefix="/api/v1", description="Controlled-substance ledger")


@blp.route("/drugs")
class Drugs(MethodView):
    @require("inventory.view")
    @blp.response(200, DrugListSchema)
    def get(self) -> dict[str, Any]:
        return {"items": service.list_drugs()}

    @require("catalog.manage")
    @blp.arguments(CreateDrugSchema)
    @blp.response(201, DrugSchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.create_drug(actor=current_actor(), **args)


@blp.route("/inventory/receipts")
class Receipts(MethodView):
    @require("inventory.receive")
    @idempotent
    @blp.arguments(ReceiveStockSchema)
    @blp.response(201, ReceiptSchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.receive_stock(actor=current_actor(), **args)


@blp.route("/inventory/containers/<int:container_id>")
class ContainerById(MethodView):
    @require("inventory.view")
    @blp.response(200, ContainerSchema)
    def get(self, container_id: int) -> Any:
        return service.get_container(container_id)


@blp.route("/inventory/administrations")
class Administrations(MethodView):
    @require("inventory.administer")
    @idempotent
    @blp.arguments(AdministrationSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        if args.get("appointment_id") is not None:
            from clinic.visits.service import check_ledger_link

            service.check_links(
                container_id=args["container_id"], patient_id=args["patient_id"], appointment_id=args["appointment_id"]
            )

            check_ledger_link(appointment_id=args["appointment_id"], patient_id=args["patient_id"])
        return service.record_administration(actor=current_actor(), last_write=True, **args)


@blp.route("/inventory/wastes")
class Wastes(MethodView):
    @require("inventory.waste")
    @idempotent
    @blp.arguments(WasteSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.record_waste(actor=current_actor(), client_addr=client_addr(), **args)


@blp.route("/inventory/transfers")
class Transfers(MethodView):
    @require("inventory.transfer")
    @idempotent
    @blp.arguments(TransferSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.record_transfer(actor=current_actor(), **args)


@blp.route("/inventory/losses")
class Losses(MethodView):
    @require("inventory.loss")
    @idempotent
    @blp.arguments(LossSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.record_loss(actor=current_actor(), client_addr=client_addr(), **args)


@blp.route("/inventory/disposals")
class Disposals(MethodView):
    @require("inventory.dispose")
    @idempotent
    @blp.arguments(DisposalSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        return service.record_disposal(actor=current_actor(), client_addr=client_addr(), **args)


@blp.route("/inventory/corrections")
class Corrections(MethodView):
    @require("inventory.correct")
    @idempotent
    @blp.arguments(CorrectionSchema)
    @blp.response(201, LedgerEntrySchema)
    def post(self, args: dict[str, Any]) -> Any:
        from clinic.visits.service import check_correction

        check_correction(location_id=args["location_id"], corrects_seq=args["corrects_seq"])
        return service.record_correction(actor=current_actor(), client_addr=client_addr(), **args)


@blp.route("/inventory/counts")
class Counts(MethodView):
    @require("inventory.count")
    @idempotent
    @blp.arguments(CountSchema)
    @blp.response(201, CountResultSchema)
    def post(self, args: dict[str, Any]) -> Any:
        lines = [
            {"container_id": ln["container_id"], "counted_ug": ln["counted_ug"], "exact": ln["exact"]}
            for ln in args.pop("lines")
        ]
        return service.reconcile_count(actor=current_actor(), client_addr=client_addr(), lines=lines, **args)


@blp.route("/inventory/discrepancies/<int:discrepancy_id>/resolve")
class ResolveDiscrepancy(MethodView):
    @require("inventory.resolve")
    @idempotent
    @blp.arguments(ResolveDiscrepancySchema)
    @blp.response(200, DiscrepancyOutSchema)
    def post(self, args: dict[str, Any], discrepancy_id: int) -> Any:
        return service.resolve_discrepancy(
            actor=current_actor(), discrepancy_id=discrepancy_id, client_addr=client_addr(), **args
        )


@blp.route("/inventory/ledger")
class Ledger(MethodView):
    @require("inventory.view")
    @replica.reading  # auditors page long ranges: a streaming replica may carry them (CLINIC_REPLICA_URL)
    @blp.arguments(LedgerQuerySchema, location="query")
    @blp.response(200, LedgerPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        cursor = args.pop("cursor")
        limit = args.pop("limit")
        items = service.list_entries(
            after_id=int(cursor) if cursor else None,
            limit=limit,
            location_ids=scope.member_location_ids(current_actor()),
            **args,
        )
        return page(items, limit)


@blp.route("/inventory/balances")
class Balances(MethodView):
    @require("inventory.view")
    @blp.arguments(BalanceQuerySchema, location="query")
    @blp.response(200, BalancesSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        containers, drugs = service.balances(args["location_id"])
        return {
            "location_id": args["location_id"],
            "drugs": drugs,
            "containers": containers,
            "next_inventory_due_on": service.next_inventory_due_on(args["location_id"]),
            "inventory_overdue": service.inventory_overdue(args["location_id"]),
            "small_discrepancy_pattern": service.small_discrepancy_pattern(args["location_id"]),
            "discrepancy_alert": service.open_alert(args["location_id"]),
        }


@blp.route("/inventory/discrepancy-alerts/<int:alert_id>/resolve")
class ResolveDiscrepancyAlert(MethodView):
    @require("inventory.resolve")
    @blp.arguments(ResolveAlertSchema)
    @blp.response(200, DiscrepancyAlertSchema)
    def post(self, args: dict[str, Any], alert_id: int) -> Any:
        return service.resolve_alert(actor=current_actor(), alert_id=alert_id, **args)


@blp.route("/inventory/loss-reports")
class LossReports(MethodView):
    @require("inventory.view")
    @blp.arguments(LossReportQuerySchema, location="query")
    @blp.response(200, LossReportListSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "items": service.list_loss_reports(
                args["location_id"], location_ids=scope.member_location_ids(current_actor())
            )
        }


@blp.route("/inventory/loss-reports/<int:report_id>/steps")
class LossReportSteps(MethodView):
    @require("inventory.report")
    @blp.arguments(LossReportStepSchema)
    @blp.response(200, LossReportSchema)
    def post(self, args: dict[str, Any], report_id: int) -> Any:
        return service.mark_loss_report(actor=current_actor(), report_id=report_id, **args)
