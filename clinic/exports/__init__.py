"""Auditor exports that prove themselves (issue 13): kinds, formats, manifests, the offline verifier."""
