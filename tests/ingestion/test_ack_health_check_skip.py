"""Webhook requests skip Django's health check on a connection that the previous webhook
request used less than a second earlier.

Django's test client disconnects close_old_connections from request_started, so these tests
set connection.health_check_done = False before each request, as that receiver does in a
served request.
"""

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.urls import reverse

from omsguard import celery as omsguard_celery
from orders.models import Delivery
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the health check runs on PostgreSQL only"
)


@pytest.fixture(autouse=True)
def _no_earlier_use():
    omsguard_celery._connection_use.finished = {}
    yield
    omsguard_celery._connection_use.finished = {}


@pytest.fixture
def health_checks(monkeypatch) -> list[bool]:
    """Record each health check of the default connection and its result."""
    checks: list[bool] = []
    real_check = connection.is_usable

    def is_usable() -> bool:
        usable = real_check()
        checks.append(usable)
        return usable

    monkeypatch.setattr(connection, "is_usable", is_usable)
    return checks


def _post(client, webhook_id: str):
    # What request_started does through close_old_connections in a served request.
    connection.health_check_done = False
    body = as_body(order_payload())
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=webhook_id),
    )


@pytest.mark.django_db
def test_next_webhook_skips_health_check(channel, client, health_checks, monkeypatch):
    first = _post(client, "wh-1")
    after_first = len(health_checks)
    second = _post(client, "wh-2")
    after_second = len(health_checks)
    monkeypatch.setattr(omsguard_celery, "HEALTH_CHECK_SKIP_SECONDS", 0.0)
    third = _post(client, "wh-3")

    assert first.status_code == 200
    assert second.status_code == 200
    assert third.status_code == 200
    assert after_first == 1
    assert after_second == 1
    assert health_checks == [True, True]


@pytest.mark.django_db(transaction=True)
def test_broken_connection_gets_503(channel, client):
    assert _post(client, "wh-before").status_code == 200
    backend_pid = connection.connection.info.backend_pid
    with psycopg.connect(connection.connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [backend_pid])

    broken = _post(client, "wh-during")
    # What request_finished does: a connection with errors is checked and closed.
    close_old_connections()
    again = _post(client, "wh-during")

    assert broken.status_code == 503
    assert broken.json()["error"]["code"] == "database_unavailable"
    assert broken["Retry-After"]
    assert again.status_code == 200
    assert again.json()["status"] == "accepted"
    assert Delivery.objects.filter(delivery_id="wh-during").count() == 1
