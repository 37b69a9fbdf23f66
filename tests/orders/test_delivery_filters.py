"""Filters of GET /api/v1/deliveries/: outcome, channel, delivery id, topic and received_at."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind
from orders.models import ChannelApiGrant, Delivery, DeliveryOutcome
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

URL = "/api/v1/deliveries/"


def token_client(user) -> Client:
    token = Token.objects.create(user=user).key
    return Client(headers={"Authorization": f"Token {token}"})


def delivery(channel: Channel, delivery_id: str, *, outcome: str, topic: str, received_at):
    row = Delivery.objects.create(
        channel=channel,
        delivery_id=delivery_id,
        topic=topic,
        body=b"{}",
        signature_valid=True,
        outcome=outcome,
    )
    # received_at is auto_now_add, so it is set after the insert.
    Delivery.objects.filter(pk=row.pk).update(received_at=received_at)
    return row


@pytest.fixture
def deliveries(channel) -> dict[str, Delivery]:
    woo = Channel.objects.create(kind=ChannelKind.WOOCOMMERCE, code="woo", webhook_secret="s")
    return {
        "early": delivery(
            channel,
            "wh-early",
            outcome=DeliveryOutcome.PROCESSED,
            topic="orders/create",
            received_at=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        ),
        "failed": delivery(
            channel,
            "wh-failed",
            outcome=DeliveryOutcome.FAILED,
            topic="orders/updated",
            received_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        ),
        "woo": delivery(
            woo,
            "order-4819@2026-03-03",
            outcome=DeliveryOutcome.PROCESSED,
            topic="order.created",
            received_at=datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        ),
    }


@pytest.fixture
def manager_client(db) -> Client:
    return token_client(make_user("mia", "cs_manager"))


def listed_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["delivery_id"] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["order-4819@2026-03-03", "wh-failed", "wh-early"]),
        ({"outcome": "failed"}, ["wh-failed"]),
        ({"outcome": "processed"}, ["order-4819@2026-03-03", "wh-early"]),
        ({"channel": "shop"}, ["wh-failed", "wh-early"]),
        ({"channel": "woo"}, ["order-4819@2026-03-03"]),
        ({"channel": "unknown"}, []),
        ({"delivery_id": "wh-early"}, ["wh-early"]),
        ({"delivery_id": "wh-"}, []),
        ({"topic": "orders/updated"}, ["wh-failed"]),
        ({"received_after": "2026-03-02T09:00:00Z"}, ["order-4819@2026-03-03", "wh-failed"]),
        ({"received_before": "2026-03-02T09:00:00Z"}, ["wh-early"]),
        (
            {"received_after": "2026-03-01T12:00:00+02:00", "received_before": "2026-03-03"},
            ["wh-failed"],
        ),
        ({"channel": "shop", "outcome": "processed"}, ["wh-early"]),
        ({"outcome": ["failed", "dead_letter"]}, ["wh-failed"]),
        ({"outcome": ["failed", "processed"]}, ["order-4819@2026-03-03", "wh-failed", "wh-early"]),
        (
            {"outcome": ["processed", "failed", "processed"], "channel": "shop"},
            ["wh-failed", "wh-early"],
        ),
        ({"outcome": ""}, ["order-4819@2026-03-03", "wh-failed", "wh-early"]),
        ({"outcome": ["", "failed"]}, ["wh-failed"]),
    ],
)
def test_deliveries_filter(manager_client, deliveries, query, expected):
    assert listed_ids(manager_client.get(URL, query)) == expected


def test_repeated_outcome_is_one_in(manager_client, deliveries):
    with CaptureQueriesContext(connection) as queries:
        response = manager_client.get(URL, {"outcome": ["failed", "dead_letter"]})

    assert response.status_code == 200
    listing = [query["sql"] for query in queries if '"orders_delivery"."outcome"' in query["sql"]]
    assert listing, [query["sql"] for query in queries]
    assert all(" IN (" in sql for sql in listing)
    assert all("DISTINCT" not in sql for sql in listing)


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"outcome": "done"},
            "outcome",
            "'done' is not a valid choice. Use one of: received, processed, duplicate_order, "
            "stale_update, failed, dead_letter.",
        ),
        (
            {"outcome": ["failed", "done"]},
            "outcome",
            "'done' is not a valid choice. Use one of: received, processed, duplicate_order, "
            "stale_update, failed, dead_letter.",
        ),
        (
            {"outcome": "x" * 100},
            "outcome",
            f"'{'x' * 40}'... is not a valid choice. Use one of: received, processed, "
            "duplicate_order, stale_update, failed, dead_letter.",
        ),
        (
            {"received_after": "yesterday"},
            "received_after",
            "Enter an ISO 8601 date and time, such as 2026-03-01T09:00:00Z.",
        ),
        (
            {"received_before": "9999-12-31T23:59:59-14:00"},
            "received_before",
            "Enter a date and time between 0001-01-01 and 9999-12-31 in UTC.",
        ),
    ],
)
def test_bad_filter_value_is_400_naming_field(manager_client, deliveries, query, field, message):
    response = manager_client.get(URL, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {field: [message]}


def test_channel_filter_keeps_integration_to_its_grants(deliveries):
    user = make_user("connector", "integration")
    ChannelApiGrant.objects.create(user=user, channel=Channel.objects.get(code="shop"))
    client = token_client(user)

    assert listed_ids(client.get(URL, {"channel": "woo"})) == []
    assert listed_ids(client.get(URL, {"delivery_id": "order-4819@2026-03-03"})) == []
    assert listed_ids(client.get(URL, {"channel": "shop", "outcome": "failed"})) == ["wh-failed"]


def test_manager_without_staff_flag_lists_every_channel(deliveries):
    # CS managers may view deliveries, and channel grants limit only integrations.
    client = token_client(make_user("nils", "cs_manager"))

    assert listed_ids(client.get(URL, {"outcome": "processed"})) == [
        "order-4819@2026-03-03",
        "wh-early",
    ]


def test_schema_documents_delivery_filters(manager_client):
    schema = Client().get("/api/schema/?format=json").json()

    parameters = schema["paths"][URL]["get"]["parameters"]
    names = {parameter["name"] for parameter in parameters}
    assert {
        "outcome",
        "channel",
        "delivery_id",
        "topic",
        "received_after",
        "received_before",
    } <= names
    outcome = next(parameter for parameter in parameters if parameter["name"] == "outcome")
    assert outcome["schema"]["type"] == "array"
    assert set(outcome["schema"]["items"]["enum"]) == set(DeliveryOutcome.values)
    assert outcome["explode"] is True


UNENCODED_PLUS_MESSAGE = (
    "The + of the time zone offset arrived as a space, because an unencoded + in a query "
    "string means a space. Send it as %2B, as in {example}."
)


@pytest.mark.parametrize(
    ("raw", "example"),
    [
        ("2026-03-01T12:00:00+05:00", "2026-03-01T12:00:00%2B05:00"),
        ("2026-03-01T12:00+0530", "2026-03-01T12:00%2B0530"),
        ("2026-03-01 12:00:00+05:00", "2026-03-01T12:00:00%2B05:00"),
    ],
)
def test_unencoded_plus_offset_is_400(manager_client, deliveries, raw, example):
    # Sent as written, without percent-encoding, as a hand-typed curl URL does.
    response = manager_client.get(f"{URL}?received_after={raw}")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "received_after": [UNENCODED_PLUS_MESSAGE.format(example=example)]
    }


def test_encoded_plus_offset_filters(manager_client, deliveries):
    # 2026-03-02T12:00+05:00 is 07:00 UTC, before the failed delivery at 09:00 UTC.
    response = manager_client.get(f"{URL}?received_after=2026-03-02T12:00:00%2B05:00")

    assert listed_ids(response) == ["order-4819@2026-03-03", "wh-failed"]


def test_space_between_date_and_time_still_reads(manager_client, deliveries):
    response = manager_client.get(f"{URL}?received_after=2026-03-02+09:00")

    assert listed_ids(response) == ["order-4819@2026-03-03", "wh-failed"]
