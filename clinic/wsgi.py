"""WSGI entry point for gunicorn: ``gunicorn clinic.wsgi:app``."""

from clinic import create_app

app = create_app()
