"""Who did what: the access log (HIPAA 164.312(b)) and the domain audit trail. Both append-only."""
