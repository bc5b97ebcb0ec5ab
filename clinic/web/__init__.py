"""The staff web shell: layout, dashboard, health and error pages."""
