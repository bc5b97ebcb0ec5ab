from __future__ import annotations

from tests.conftest import Client, dispose, make_app


def test_health_reports_database_and_broker(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_degrades_when_the_broker_is_down(app):
    broken = make_app(app.config["SQLALCHEMY_DATABASE_URI"])
    broken.extensions["celery"].conf.broker_url = "redis://127.0.0.1:1/0"
    broken.test_client_class = Client
    try:
        resp = broken.test_client().get("/health")
    finally:
        dispose(broken)
    assert resp.status_code == 503
    assert resp.json == {"status": "degraded", "database": "ok", "broker": "unavailable"}


def test_health_needs_no_auth_and_leaks_nothing(client):
    body = client.get("/health").get_data(as_text=True)
    assert "postgres" not in body and "sqlite" not in body
