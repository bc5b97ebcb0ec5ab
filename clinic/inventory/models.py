"""Models arrive with this domain's issue; the package exists so the layout is fixed from day one."""
