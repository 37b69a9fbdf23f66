"""Query parameters that every REST list shares: page, page_size and repeated choice values.

A bad page or page_size gets a 400 naming the parameter and the allowed values, a page past
the last one a 404 naming the last page. A repeated choice parameter keeps the rows that match
any of its values (status, kind, outcome).
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/v1/orders/",
    "/api/v1/deliveries/",
    "/api/v1/review-items/",
    "/api/v1/decisions/",
]
PAGE_SIZE_MESSAGE = "Enter a whole number from 1 to 500."
PAGE_MESSAGE = "Enter a whole number from 1, or last for the last page."


@pytest.fixture
def client(db) -> Client:
    user = User.objects.create_superuser("root", password="pw-root")
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})


def order_with_item(channel, number: int, status: str, kind: str, item_status: str) -> Order:
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-{number}",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
        outcome=DeliveryOutcome.PROCESSED if number % 2 else DeliveryOutcome.FAILED,
    )
    money = {
        name: Decimal("10.00")
        for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total")
    }
    order = Order.objects.create(
        channel=channel,
        channel_order_id=str(number),
        delivery=delivery,
        status=status,
        currency="USD",
        **money,
    )
    ReviewItem.objects.create(
        kind=kind,
        status=item_status,
        order=order,
        reason="Test item.",
        source_data={},
    )
    return order


@pytest.fixture
def orders(channel) -> list[Order]:
    return [
        order_with_item(channel, 1, OrderStatus.ON_HOLD, ReviewKind.ADDRESS, ReviewStatus.OPEN),
        order_with_item(
            channel, 2, OrderStatus.READY, ReviewKind.UNMAPPED_SKU, ReviewStatus.ACCEPTED
        ),
        order_with_item(
            channel, 3, OrderStatus.CANCELLED, ReviewKind.HIGH_VALUE, ReviewStatus.REJECTED
        ),
    ]


def error_of(response) -> dict:
    body = response.json()
    assert "error" in body, body
    return body["error"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("value", ["abc", "0", "-1", "501", "1e3", "1.5", "²", "9" * 5000])
def test_bad_page_size_is_400(client, url, value):
    response = client.get(url, {"page_size": value})

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["fields"] == {"page_size": [PAGE_SIZE_MESSAGE]}


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", "1e9", "²"])
def test_bad_page_is_400(client, url, value):
    response = client.get(url, {"page": value})

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"page": [PAGE_MESSAGE]}


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("500", 3), (" 2 ", 2), ("", 3)])
def test_page_size_in_range_applies(client, orders, value, expected):
    response = client.get("/api/v1/orders/", {"page_size": value})

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert len(body["results"]) == expected


def test_page_past_last_is_404_naming_last(client, orders):
    response = client.get("/api/v1/orders/", {"page_size": "2", "page": "3"})

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["message"] == "Page 3 is past the last page, page 2. The list has 3 results."


def test_huge_page_is_404(client, orders):
    response = client.get("/api/v1/orders/", {"page": "9" * 400})

    assert response.status_code == 404
    message = error_of(response)["message"]
    assert message.endswith("is past the last page, page 1. The list has 3 results.")


@pytest.mark.parametrize(("page", "expected"), [("last", ["1"]), ("", ["3", "2"]), ("2", ["1"])])
def test_page_names_and_empty_page(client, orders, page, expected):
    response = client.get("/api/v1/orders/", {"page_size": "2", "page": page})

    assert response.status_code == 200
    assert [row["channel_order_id"] for row in response.json()["results"]] == expected


def test_empty_list_has_page_one(client):
    response = client.get("/api/v1/orders/", {"page": "1"})

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_page_check_adds_no_query(client, orders):
    with CaptureQueriesContext(connection) as first:
        assert client.get("/api/v1/orders/", {"page_size": "2"}).status_code == 200
    with CaptureQueriesContext(connection) as second:
        assert client.get("/api/v1/orders/", {"page_size": "2", "page": "2"}).status_code == 200

    counts = [query["sql"] for query in second if query["sql"].startswith("SELECT COUNT")]
    assert len(counts) == 1
    assert len(second) == len(first)


def test_schema_states_page_size_range(client):
    schema = Client().get("/api/schema/?format=json").json()

    for url in LISTS:
        parameters = {
            parameter["name"]: parameter for parameter in schema["paths"][url]["get"]["parameters"]
        }
        assert parameters["page_size"]["schema"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 500,
        }, url
        assert parameters["page"]["schema"] == {"type": "integer", "minimum": 1}, url


# --- Repeated choice values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "on_hold"}, ["1"]),
        ({"status": ["on_hold", "cancelled"]}, ["3", "1"]),
        ({"status": ["on_hold", "ready", "cancelled"]}, ["3", "2", "1"]),
        ({"status": ["awaiting_review", "received"]}, []),
        ({"status": ""}, ["3", "2", "1"]),
    ],
)
def test_orders_repeated_status(client, orders, query, expected):
    response = client.get("/api/v1/orders/", query)

    assert response.status_code == 200, response.content
    assert [row["channel_order_id"] for row in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": ["open", "rejected"]}, ["1", "3"]),
        ({"kind": ["address", "unmapped_sku"]}, ["1", "2"]),
        ({"kind": ["address", "unmapped_sku"], "status": ["accepted", "rejected"]}, ["2"]),
    ],
)
def test_review_items_repeated_choices(client, orders, query, expected):
    response = client.get("/api/v1/review-items/", query)

    assert response.status_code == 200, response.content
    order_ids = dict(Order.objects.values_list("pk", "channel_order_id"))
    assert [order_ids[row["order"]] for row in response.json()["results"]] == expected


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/orders/", "status"),
        ("/api/v1/review-items/", "status"),
        ("/api/v1/review-items/", "kind"),
    ],
)
def test_bad_repeated_choice_is_400(client, url, field):
    response = client.get(url, {field: ["open", "on_hold", "nonexistent"]})

    assert response.status_code == 400
    messages = error_of(response)["fields"][field]
    assert len(messages) == 1
    assert messages[0].startswith("'")
    assert " is not a valid choice. Use one of: " in messages[0]
