"""clinic-ops: operations and controlled-substance records for ketamine and esketamine clinics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, g

__all__ = ["create_app"]

_DEFAULT_INSTANCE = Path(__file__).resolve().parent.parent / "instance"


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """The only app factory: the WSGI server, the worker, the CLI and the tests all use it.

    It never migrates the database; ``clinic db upgrade`` does, as a deploy step.
    """
    instance = os.environ.get("CLINIC_INSTANCE_PATH") or str(_DEFAULT_INSTANCE)
    app = Flask(
        __name__, instance_path=os.path.abspath(instance), static_folder="web/static", template_folder="web/templates"
    )

    from clinic.core.fields import IdConverter

    # Registered before any blueprint so every <int:...> route uses it (and OpenAPI shows the range).
    app.url_map.converters["int"] = IdConverter

    from clinic import config as settings
    from clinic.core import logging as clinic_logging

    settings.load(app, config)
    clinic_logging.configure(app.config.get("LOG_LEVEL", "INFO"))

    from clinic.core.db import configure_sqlite
    from clinic.extensions import api, celery_init_app, db

    db.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine)
    celery_init_app(app)
    api.init_app(app)

    from clinic.core import edge, errors, tx

    edge.init_app(app)  # first: its limits hold before anything else reads the request
    errors.init_app(app)
    tx.init_app(app)

    from clinic.auth import policy

    policy.init_app(app)
    _register_blueprints(app)
    _register_template_helpers(app)

    from clinic import cli

    cli.init_app(app)
    return app


def _register_blueprints(app: Flask) -> None:
    # Import every model module so metadata (and migrations' autogenerate check) sees them all.
    import clinic.audit.tasks
    import clinic.core.idempotency
    import clinic.exports.models
    import clinic.exports.tasks
    import clinic.inventory.models
    import clinic.inventory.tasks
    import clinic.locations.models
    import clinic.outcomes.models
    import clinic.patients.models
    import clinic.reminders.models
    import clinic.reminders.tasks
    import clinic.scheduling.models
    import clinic.system.models
    import clinic.system.tasks
    import clinic.visits.models
    import clinic.visits.tasks  # noqa: F401
    from clinic.audit import integrity as audit_integrity
    from clinic.auth import api as auth_api
    from clinic.auth import views as auth_views
    from clinic.exports import api as exports_api
    from clinic.exports import views as exports_views
    from clinic.extensions import api
    from clinic.inventory import api as inventory_api
    from clinic.inventory import disposal_views  # noqa: F401  (routes on inventory_ui)
    from clinic.inventory import views as inventory_views
    from clinic.locations import api as locations_api
    from clinic.locations import views as locations_views
    from clinic.outcomes import api as outcomes_api
    from clinic.outcomes import views as outcomes_views
    from clinic.patients import api as patients_api
    from clinic.patients import pages as patient_pages  # noqa: F401  (routes on patients_ui)
    from clinic.patients import views as patients_views
    from clinic.reminders import api as reminders_api
    from clinic.reminders import views as reminders_views
    from clinic.scheduling import api as scheduling_api
    from clinic.scheduling import feed_views  # noqa: F401  (routes on scheduling_ui)
    from clinic.scheduling import views as scheduling_views
    from clinic.visits import api as visits_api
    from clinic.visits import pmf_api, pmf_views
    from clinic.visits import views as visits_views
    from clinic.web import views as web_views

    app.register_blueprint(web_views.bp)
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(inventory_views.bp)
    app.register_blueprint(patients_views.bp)
    app.register_blueprint(scheduling_views.bp)
    app.register_blueprint(outcomes_views.bp)
    app.register_blueprint(pmf_views.bp)
    app.register_blueprint(visits_views.bp)
    app.register_blueprint(reminders_views.bp)
    app.register_blueprint(exports_views.bp)
    audit_integrity.init_app(app)  # the integrity partial's template and its data
    app.register_blueprint(locations_views.bp)
    for blueprint in (
        auth_api.blp,
        locations_api.blp,
        patients_api.blp,
        inventory_api.blp,
        scheduling_api.blp,
        visits_api.blp,
        outcomes_api.blp,
        pmf_api.blp,
        reminders_api.blp,
        exports_api.blp,
    ):
        api.register_blueprint(blueprint)


NAV_ITEMS = [
    ("web_ui.dashboard", "Today", "dashboard.view"),
    ("visits_ui.board", "Board", "visits.view"),
    ("auth_ui.users", "Users", "users.view"),
    ("inventory_ui.safe", "Safe", "inventory.view"),
    ("inventory_ui.ledger", "Ledger", "inventory.view"),
    ("patients_ui.index", "Patients", "patients.view"),
    ("scheduling_ui.day", "Schedule", "scheduling.view"),
    ("outcomes_ui.safety_alerts", "Safety alerts", "outcomes.view"),
    ("reminders_ui.outbox", "Reminders", "reminders.view"),
    ("exports_ui.index", "Exports", "exports.view"),
    ("locations_ui.index", "Locations", "locations.manage"),
    ("scheduling_ui.my_feeds", "My calendar", "self.view"),
    ("auth_ui.account", "Account", "self.view"),
]


def _register_template_helpers(app: Flask) -> None:
    from clinic.auth.policy import allowed

    def can(permission: str) -> bool:
        actor = g.get("actor")
        return actor is not None and allowed(actor, permission)

    def unread_notices() -> int:
        from clinic.reminders import service as reminders

        actor = g.get("actor")
        return reminders.unread_count(actor) if actor is not None and allowed(actor, "notices.view") else 0

    app.jinja_env.globals.update(can=can, nav_items=NAV_ITEMS, unread_notices=unread_notices)
