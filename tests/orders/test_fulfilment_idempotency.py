"""Idempotency-Key on the fulfilment API when requests with one key overlap.

The unique (user, key) index decides which request writes. The others write nothing and get
the first response again, or 409 when their body differs.
"""

import threading

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders import fulfilment_api
from orders.models import (
    ChannelApiGrant,
    Chargeback,
    FulfilmentException,
    IdempotencyKey,
    Order,
    OrderReturn,
    Shipment,
)
from tests.conftest import as_body, make_user, order_payload, signed_headers

pytestmark = pytest.mark.django_db

MODELS = {
    "/api/v1/fulfilment-exceptions/": FulfilmentException,
    "/api/v1/returns/": OrderReturn,
    "/api/v1/chargebacks/": Chargeback,
    "/api/v1/shipments/": Shipment,
}


def report_body(path: str, order: Order, index: int) -> dict:
    """A valid report for `path`; each index gives a different body (and id)."""
    if path == "/api/v1/fulfilment-exceptions/":
        return {"order": order.pk, "stage": "pick", "reason": "missing_item", "note": f"n{index}"}
    if path == "/api/v1/returns/":
        return {"order": order.pk, "return_id": f"R{index}", "reason": "other"}
    if path == "/api/v1/chargebacks/":
        return {
            "order": order.pk,
            "chargeback_id": f"CB{index}",
            "amount": "9.99",
            "currency": "USD",
        }
    return {"order": order.pk, "shipment_id": f"S{index}"}


@pytest.fixture
def order(channel, catalog, post_webhook) -> Order:
    body = as_body(order_payload())
    post_webhook(body, signed_headers(body, webhook_id="wh-idempotency"))
    return Order.objects.get()


@pytest.fixture
def token(channel) -> str:
    user = make_user("warehouse", "integration")
    ChannelApiGrant.objects.create(user=user, channel=channel)
    return Token.objects.create(user=user).key


def post(token: str, path: str, body: dict, key: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.post(path, body, format="json", headers={"Idempotency-Key": key})


# --- Sequential: the early replay check missed, as when two requests pass it together ------


@pytest.fixture
def early_check_missed(monkeypatch) -> None:
    """Both requests pass the read-before-write check, as they do when they overlap."""
    monkeypatch.setattr(fulfilment_api, "_idempotency_replay", lambda *args, **kwargs: None)


@pytest.mark.parametrize("path", list(MODELS))
def test_overlapping_retry_replays_first(early_check_missed, order, token, path):
    body = report_body(path, order, 1)

    first = post(token, path, body, "key-1")
    second = post(token, path, body, "key-1")

    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second.json() == first.json()
    assert MODELS[path].objects.count() == 1


@pytest.mark.parametrize("path", list(MODELS))
def test_overlapping_other_body_is_409(early_check_missed, order, token, path):
    first = post(token, path, report_body(path, order, 1), "key-1")
    second = post(token, path, report_body(path, order, 2), "key-1")

    assert first.status_code == 201, first.content
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_key_reused"
    assert MODELS[path].objects.count() == 1


def test_rejected_write_leaves_key_free(order, token):
    path = "/api/v1/fulfilment-exceptions/"
    unknown_parcel = {**report_body(path, order, 1), "shipment_id": "NO-SUCH-PARCEL"}

    rejected = post(token, path, unknown_parcel, "key-1")
    accepted = post(token, path, report_body(path, order, 1), "key-1")

    assert rejected.status_code == 400
    assert rejected.json()["error"]["code"] == "unknown_shipment"
    assert accepted.status_code == 201
    assert IdempotencyKey.objects.get().response_status == 201


def test_stored_key_holds_response(order, token):
    path = "/api/v1/returns/"

    response = post(token, path, report_body(path, order, 1), "key-1")

    stored = IdempotencyKey.objects.get()
    assert stored.response_status == 201
    assert stored.response_body == response.json()


# --- PostgreSQL: real concurrent requests --------------------------------------------------


def _in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results.append(work(index))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", list(MODELS))
def test_concurrent_same_key_writes_once(order, token, path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")
    body = report_body(path, order, 1)

    responses = _in_threads(8, lambda _: post(token, path, body, "same-key"))

    assert [r.status_code for r in responses] == [201] * 8
    first = responses[0].json()
    assert all(r.json() == first for r in responses)
    assert MODELS[path].objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", list(MODELS))
def test_concurrent_other_bodies_get_409(order, token, path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")

    responses = _in_threads(
        8, lambda index: post(token, path, report_body(path, order, index), "k")
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 409}
    assert codes == {"idempotency_key_reused"}
    assert MODELS[path].objects.count() == 1
