"""Settings. Contract variables (CONTRACT.md) first, then any ``CLINIC_*`` override.

Secrets never live in code: the session key is read from ``SECRET_KEY`` or generated once into
the instance folder with owner-only permissions.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from clinic.core.db import normalise_database_url

DEFAULTS: dict[str, Any] = {
    # Sessions: server-side rows, carried by a signed cookie (RELIABILITY.md §4.2, F19).
    "SECURE_COOKIES": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_PATH": "/",
    "IDLE_TIMEOUT_MINUTES": 15,
    "SESSION_MAX_HOURS": 12,
    # Second factor is required for these roles (a setting, issue 2).
    "TOTP_REQUIRED_ROLES": ["admin", "auditor"],
    # Sign-in throttling: failures inside the window, per account and per client address.
    "LOGIN_WINDOW_MINUTES": 15,
    "LOGIN_MAX_FAILURES_PER_ACCOUNT": 5,
    "LOGIN_MAX_FAILURES_PER_ADDRESS": 20,
    # Unknown-account failures from one address past the limit: each further one doubles the wait.
    "LOGIN_BASE_DELAY_SECONDS": 2,
    "LOGIN_MAX_DELAY_SECONDS": 15 * 60,
    # API tokens: 12 h at most, except for the service accounts named here (e-mails), which may
    # ask for up to TOKEN_SERVICE_MAX_TTL_HOURS (an integration's token).
    "TOKEN_TTL_HOURS": 12,
    "TOKEN_MAX_TTL_HOURS": 12,
    "TOKEN_SERVICE_ACCOUNTS": [],
    "TOKEN_SERVICE_MAX_TTL_HOURS": 24 * 30,
    # The web edge (clinic.core.edge, SYS-07). Proxies in front whose X-Forwarded-For/-Proto are
    # believed (0: none; 1 behind the one TLS proxy the README recommends).
    "TRUSTED_PROXIES": 0,
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    "MAX_FORM_MEMORY_SIZE": 512 * 1024,
    "MAX_JSON_DEPTH": 32,
    "WTF_CSRF_TIME_LIMIT": None,  # bound to the session instead, which already expires
    "API_TITLE": "clinic-ops",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api/v1",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": None,
    "JSON_SORT_KEYS": False,
    "HEARTBEAT_STALE_SECONDS": 180,
    # How long an unanswered Idempotency-Key claim blocks a retry: longer than any request takes.
    "IDEMPOTENCY_LEASE_SECONDS": 30,
    # A post-dose vitals checkpoint not met this many minutes after it is due raises "vitals overdue".
    "VITALS_OVERDUE_MINUTES": 10,
    # Operations (issue 14): CLINIC_REPLICA_URL, an optional streaming replica for read-only reports
    # and exports, and how long a read waits for it to replay the primary's position (clinic.core.replica);
    # where pg_dump/pg_restore live when not on PATH (clinic backup / restore).
    "REPLICA_URL": None,
    "REPLICA_WAIT_SECONDS": 2.0,
    "PG_BIN_DIR": None,
    # Reminders (clinic/reminders/). E-mail goes by SMTP when MAIL_HOST is set, SMS through the HTTP
    # provider when SMS_URL is; otherwise both go to the console outbox (instance/reminders-outbox.log).
    "MAIL_HOST": None,
    "MAIL_PORT": 25,
    "MAIL_USERNAME": None,
    "MAIL_PASSWORD": None,
    "MAIL_USE_TLS": False,  # STARTTLS
    "MAIL_USE_SSL": False,  # implicit TLS (port 465)
    "MAIL_FROM": "reminders@localhost",
    "MAIL_TIMEOUT": 10,
    #: the right-hand side of every Message-ID (<reminder-ID@DOMAIN>); default the host's name
    "MAIL_MESSAGE_ID_DOMAIN": None,
    "SMS_URL": None,
    "SMS_TOKEN": None,
    "SMS_FROM": None,
    "SMS_TIMEOUT": 10,
    "REMINDER_OUTBOX_FILE": None,
    # A claim lapses after this long (a killed worker's, a batch the broker lost); then it is taken
    # again. Longer than a batch's sends: MAIL_TIMEOUT per message at worst.
    "REMINDER_LEASE_SECONDS": 120,
    "REMINDER_MAX_ATTEMPTS": 5,
    #: the first retry waits this long; each next one twice as long (capped at 6 h)
    "REMINDER_BACKOFF_SECONDS": 60,
    "REMINDER_CLAIM_BATCH": 1000,
    "REMINDER_MAX_IN_FLIGHT": 4000,
    "REMINDER_TASK_BATCH": 100,
    #: messages taken to the point of no return together (one SMTP connection each), handed off
    #: in one commit
    "REMINDER_SEND_GROUP": 20,
    # A ledger entry charted more than this many hours after it happened needs a reason (DEA-06).
    "LEDGER_BACKCHART_HOURS": 72,
    # SHA-256 fingerprints of the keys that may sign ledger checkpoints (`clinic ledger verify`); empty:
    # the signing key file's own key.
    "CHECKPOINT_KEY_FINGERPRINTS": [],
    # A copy of every signed checkpoint, outside the database; empty: instance/checkpoints/<db>.jsonl.
    "CHECKPOINT_LOG": None,
    # Seals over the access log and audit trail (clinic.audit.seals): rows per seal at most, and how
    # long the sealer waits for transactions open when it starts before leaving the range to its next run.
    "SEAL_MAX_ROWS": 10_000,
    "SEAL_WAIT_SECONDS": 10,
}


def _secret_key(instance: Path) -> str:
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def load(app: Flask, overrides: dict[str, Any] | None) -> None:
    instance = Path(app.instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    app.config.update(DEFAULTS)

    env = os.environ
    app.config["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(
        env.get("DATABASE_URL") or f"sqlite:///{instance / 'clinic.sqlite'}"
    )
    broker = env.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{instance / 'broker.sqlite'}"
    app.config["REDIS_URL"] = env.get("REDIS_URL")
    app.config["CELERY"] = {
        "broker_url": broker,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "timezone": "UTC",
        "enable_utc": True,
        # Due times live in the database and a beat task sweeps them (PITFALLS.md), so no task
        # waits in the broker for long and the visibility timeout only guards crashed workers.
        # kombu's SQLAlchemy transport hands these options to create_engine, so Redis-only.
        "broker_transport_options": {"visibility_timeout": 3600} if broker.startswith("redis") else {},
    }
    app.config.from_prefixed_env("CLINIC")
    if env.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = env["SECRET_KEY"]
    if overrides:
        app.config.update(overrides)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(instance)

    secure = bool(app.config["SECURE_COOKIES"])
    app.config["SESSION_COOKIE_SECURE"] = secure
    # __Host- binds the cookie to this host and path "/" and demands Secure (ASVS V3.3.3).
    app.config["SESSION_COOKIE_NAME"] = "__Host-session" if secure else "clinic_session"
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config["SQLALCHEMY_DATABASE_URI"])
    if app.config["REPLICA_URL"] and not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        raise RuntimeError("CLINIC_REPLICA_URL needs a PostgreSQL DATABASE_URL (the streaming replica's primary)")


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 5}}
    # F14. No pool_pre_ping: it costs a round trip on every checkout. A connection the server dropped fails
    # on use instead; SQLAlchemy then invalidates the pool, and clinic.auth.policy retries the request's
    # first statement once on a fresh connection (any later failure answers 503 with Retry-After).
    # tests/test_disconnects.py holds it to that under terminated backends and a database restart.
    return {"pool_size": 5, "max_overflow": 10}
