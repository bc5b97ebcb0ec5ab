"""Inventory domain (filled in by its own issue)."""
