"""Operational state: worker and scheduler heartbeats, health of the backing services."""
