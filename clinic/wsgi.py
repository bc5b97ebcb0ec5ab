"""WSGI entry point for gunicorn: ``gunicorn clinic.wsgi:app``."""

import gc

from clinic import create_app

app = create_app()
# The app's modules, models and mappers live as long as the process: moved out of the collector's
# generations, they are not walked again by every collection a request's garbage triggers.
gc.freeze()
