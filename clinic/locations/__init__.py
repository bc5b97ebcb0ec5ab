"""Registered locations (each a DEA registrant), their storage sites and chairs."""
