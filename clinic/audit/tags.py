"""Every audit tag, in one registry: ``domain:subject:action``.

An auditor reads the trail by these names, so they are fixed like an API: add new ones here, never
rename one in use. ``audit.record`` takes only a ``Tag``; tests/audit/test_tags.py checks that no
service spells a tag as a string.
"""

from __future__ import annotations

from enum import StrEnum


class Tag(StrEnum):
    auth_user_create = "auth:user:create"
    auth_user_enable = "auth:user:enable"
    auth_user_disable = "auth:user:disable"
    auth_user_reset_password = "auth:user:reset_password"
    auth_user_reset_totp = "auth:user:reset_totp"
    auth_user_enrol_totp = "auth:user:enrol_totp"
    auth_session_start = "auth:session:start"
    auth_session_failed = "auth:session:failed"
    auth_token_issue = "auth:token:issue"
    auth_token_revoke = "auth:token:revoke"
    auth_membership_grant = "auth:membership:grant"
    auth_membership_revoke = "auth:membership:revoke"

    audit_log_purge = "audit:log:purge"
    audit_log_purge_refused = "audit:log:purge_refused"
    inventory_ledger_purge_done = "inventory:ledger_purge:done"
    inventory_ledger_purge_refused = "inventory:ledger_purge:refused"

    locations_location_create = "locations:location:create"
    locations_location_update = "locations:location:update"
    locations_hours_set = "locations:hours:set"
    locations_storage_site_create = "locations:storage_site:create"

    patients_patient_create = "patients:patient:create"
    patients_patient_update = "patients:patient:update"
    patients_weight_record = "patients:weight:record"
    patients_rems_enroll = "patients:rems:enroll"
    patients_screening_record = "patients:screening:record"
    patients_screening_override = "patients:screening:override"
    patients_screening_reconfirm = "patients:screening:reconfirm"
    patients_screening_review = "patients:screening:review"

    outcomes_score_record = "outcomes:score:record"
    outcomes_safety_alert_raise = "outcomes:safety_alert:raise"
    outcomes_safety_alert_acknowledge = "outcomes:safety_alert:acknowledge"

    scheduling_chair_create = "scheduling:chair:create"
    scheduling_closure_create = "scheduling:closure:create"
    scheduling_prescriber_hours_set = "scheduling:prescriber_hours:set"
    scheduling_calendar_feed_create = "scheduling:calendar_feed:create"
    scheduling_calendar_feed_revoke = "scheduling:calendar_feed:revoke"
    scheduling_series_create = "scheduling:series:create"
    scheduling_session_cancel = "scheduling:session:cancel"
    scheduling_session_reschedule = "scheduling:session:reschedule"
    scheduling_session_no_show = "scheduling:session:no_show"
    scheduling_session_missed = "scheduling:session:missed"
    scheduling_protocol_create = "scheduling:protocol:create"
    scheduling_booster_interval_set = "scheduling:booster_interval:set"

    visits_visit_check_in = "visits:visit:check_in"
    visits_visit_arrangements = "visits:visit:arrangements"
    visits_vitals_record = "visits:vitals:record"
    visits_hold_release = "visits:hold:release"
    visits_dose_order = "visits:dose:order"
    visits_dose_record = "visits:dose:record"
    visits_infusion_end = "visits:infusion:end"
    visits_remainder_resolve = "visits:remainder:resolve"
    visits_visit_discharge = "visits:visit:discharge"
    visits_alert_raise = "visits:alert:raise"
    visits_pmf_submit = "visits:pmf:submit"

    reminders_reminder_retry = "reminders:reminder:retry"
    reminders_reminder_cancel = "reminders:reminder:cancel"
    reminders_settings_update = "reminders:settings:update"
    reminders_opt_out_set = "reminders:opt_out:set"

    inventory_drug_create = "inventory:drug:create"
    exports_export_request = "exports:export:request"
    exports_export_finish = "exports:export:finish"
    exports_export_fail = "exports:export:fail"
    inventory_discrepancy_resolve = "inventory:discrepancy:resolve"
    inventory_discrepancy_alert_raise = "inventory:discrepancy_alert:raise"
    inventory_discrepancy_alert_resolve = "inventory:discrepancy_alert:resolve"
    inventory_loss_report_notified = "inventory:loss_report:notified"
    inventory_loss_report_filed = "inventory:loss_report:filed"
    inventory_loss_report_notice_overdue = "inventory:loss_report:notice_overdue"
    inventory_loss_report_filing_overdue = "inventory:loss_report:filing_overdue"
    inventory_loss_report_board_notified = "inventory:loss_report:board_notified"
    inventory_loss_report_board_notice_overdue = "inventory:loss_report:board_notice_overdue"
    # One per ledger entry kind (clinic.inventory.models.EntryKind), looked up by ledger_tag().
    inventory_ledger_initial_inventory = "inventory:ledger:initial_inventory"
    inventory_ledger_receipt = "inventory:ledger:receipt"
    inventory_ledger_administration = "inventory:ledger:administration"
    inventory_ledger_waste = "inventory:ledger:waste"
    inventory_ledger_transfer = "inventory:ledger:transfer"
    inventory_ledger_return_to_distributor = "inventory:ledger:return_to_distributor"
    inventory_ledger_destruction = "inventory:ledger:destruction"
    inventory_ledger_loss = "inventory:ledger:loss"
    inventory_ledger_count = "inventory:ledger:count"
    inventory_ledger_adjustment = "inventory:ledger:adjustment"
    inventory_ledger_correction = "inventory:ledger:correction"


def ledger_tag(kind: str) -> Tag:
    """The tag of a ledger entry of ``kind`` (an EntryKind value)."""
    return Tag(f"inventory:ledger:{kind}")


def loss_report_tag(step: str) -> Tag:
    """The tag of a Form 106 step (``notified``, ``filed``) or a missed deadline (``notice_overdue``)."""
    return Tag(f"inventory:loss_report:{step}")
