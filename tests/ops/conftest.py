"""Operations tests: each module gets a database of its own (nothing another test left behind, such
as a deliberately tampered ledger, can leak into a backup), on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import database_url, dispose, drop_pg_database, make_app


@pytest.fixture(scope="module")
def app(backend: str) -> Iterator[Flask]:
    with fresh_app(backend, "ops", migrated=True) as application:
        yield application


class fresh_app:
    """An app on a new database of its own (empty unless ``migrated``), dropped afterwards."""

    def __init__(self, backend: str, label: str, *, migrated: bool = False, **extra: object) -> None:
        from tests.conftest import Client, migrate

        self.backend = backend
        self.url = database_url(backend, label)
        self.app = make_app(self.url, **extra)
        self.app.test_client_class = Client
        if migrated:
            migrate(self.app)

    def __enter__(self) -> Flask:
        return self.app

    def __exit__(self, *exc: object) -> None:
        dispose(self.app)
        if self.backend == "postgresql":
            drop_pg_database(self.url)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def cli(app: Flask, *args: str):  # type: ignore[no-untyped-def]
    """Run ``clinic ARGS`` in-process against ``app``; returns click's Result."""
    return app.test_cli_runner().invoke(args=list(args), catch_exceptions=False)
