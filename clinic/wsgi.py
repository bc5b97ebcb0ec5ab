"""WSGI entry point for gunicorn: ``gunicorn clinic.wsgi:app``."""

import gc
import sys

from clinic import create_app

app = create_app()
# The app's modules, models and mappers live as long as the process: moved out of the collector's
# generations, they are not walked again by every collection a request's garbage triggers.
gc.freeze()
# A worker's threads mostly wait on PostgreSQL. When a reply arrives, its thread waits for the GIL
# until the thread holding it gives it up, after up to the switch interval (5 ms by default). A
# thread that holds a row lock (a location's ledger chain head) then holds it that much longer, and
# every request queued on that lock waits too: a convoy. 1 ms keeps that wait short.
sys.setswitchinterval(0.001)
