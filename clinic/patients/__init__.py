"""Patients: demographics and contact (DEA-26), weights, REMS enrolment (SPR-05), screening (DOMAIN.md §4)."""
