"""Patients: demographics needed on dispensing records (DEA-26). Screening arrives with issue 4."""
