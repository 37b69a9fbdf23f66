"""Shipments, fulfilment exceptions, returns and chargebacks reported through the REST API."""

import json
import threading
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Channel, ChannelKind, Sku
from guardrails.models import AuditEntry
from orders.fulfilment import return_attribution, shipment_record
from orders.models import (
    FULFILMENT_RETURN_REASONS,
    ChannelApiGrant,
    Chargeback,
    FulfilmentException,
    Order,
    OrderReturn,
    ReturnAttribution,
    ReturnReason,
    Shipment,
)
from orders.services import order_event_add, order_line_sku_substitute
from tests.conftest import as_body, make_user, order_payload, signed_headers

pytestmark = pytest.mark.django_db

TEE = "TEE-CLASSIC-BLK-M"
TEE_WHITE = "TEE-CLASSIC-WHT-M"
MUG = "MUG-ENAMEL-NVY-OS"
MUG_LINE = {
    "id": 13571113171924,
    "variant_id": 44012345678902,
    "sku": MUG,
    "title": "Enamel Camp Mug",
    "name": "Enamel Camp Mug - Navy / OS",
    "quantity": 1,
    "price": "14.00",
}
TEE_LINE = {
    "id": 13571113171923,
    "variant_id": 44012345678901,
    "sku": TEE,
    "title": "Classic Cotton T-Shirt",
    "name": "Classic Cotton T-Shirt - Black / M",
    "quantity": 2,
    "price": "19.99",
}


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def staff_user(username: str, group: str):
    user = make_user(username, group)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture(autouse=True)
def _clock_in_november_2024():
    """The reports below carry fixed dates in early November 2024, so "now" is just after."""
    with time_machine.travel("2024-11-06T12:00:00Z", tick=True):
        yield


@pytest.fixture
def order(channel, catalog, post_webhook) -> Order:
    """A ready Shopify order: 2 x TEE and 1 x MUG."""
    body = as_body(
        order_payload(lines=[TEE_LINE, MUG_LINE], subtotal_price="53.98", total_price="58.98")
    )
    post_webhook(body, signed_headers(body, webhook_id="wh-fulfil"))
    return Order.objects.get()


@pytest.fixture
def reporter(channel):
    """An integration user granted the order's channel."""
    user = make_user("warehouse", "integration")
    ChannelApiGrant.objects.create(user=user, channel=channel)
    return user


@pytest.fixture
def api(reporter) -> APIClient:
    return token_client(reporter)


def ship(api: APIClient, order: Order, shipment_id: str = "S1", **fields):
    body = {"order": order.pk, "shipment_id": shipment_id, **fields}
    return api.post("/api/v1/shipments/", body, format="json")


def post_raw(api: APIClient, path: str, body: str):
    return api.post(path, data=body.encode(), content_type="application/json")


def error_fields(response) -> dict:
    return response.json()["error"]["fields"]


# --- Shipments -----------------------------------------------------------------------------


def test_shipment_recorded_with_event_and_audit(api, reporter, order):
    response = ship(
        api,
        order,
        lines=[{"sku": TEE, "quantity": 2}, {"sku": MUG, "quantity": 1}],
        carrier_code="UPS Ground",
        tracking_number="1Z999",
        shipped_at="2024-11-05T09:00:00Z",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["order"] == order.pk
    assert body["channel"] == "shop"
    assert body["shipment_id"] == "S1"
    assert body["carrier_code"] == "UPS Ground"
    assert body["carrier_service"] == "ups/ground"
    assert body["lines"] == [{"sku": TEE, "quantity": 2}, {"sku": MUG, "quantity": 1}]
    assert body["status"] == "shipped"
    assert body["is_duplicate"] is False
    assert body["address_corrected"] is False
    shipment = Shipment.objects.get()
    assert shipment.created_by == reporter
    event = order.events.get(kind="shipment.recorded")
    assert event.actor == reporter
    assert "S1" in event.message
    audit = AuditEntry.objects.get(action="shipment.recorded")
    assert audit.target_id == str(shipment.pk)
    assert audit.actor == reporter
    assert audit.after["lines"] == body["lines"]


def test_shipment_names_order_by_channel_order_id(api, order):
    body = {"channel": "shop", "channel_order_id": order.channel_order_id, "shipment_id": "S1"}

    response = api.post("/api/v1/shipments/", body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["order"] == order.pk


def test_shipment_shipped_at_defaults_to_now(api, order):
    before = timezone.now()

    ship(api, order)

    assert before <= Shipment.objects.get().shipped_at <= timezone.now()


def test_unmapped_carrier_code_kept_as_given(api, order):
    response = ship(api, order, carrier_code="Bicycle courier")

    assert response.json()["carrier_code"] == "Bicycle courier"
    assert response.json()["carrier_service"] is None


def test_carrier_service_pair_resolves(api, order):
    response = ship(api, order, carrier_code="ups/ground")

    assert response.json()["carrier_service"] == "ups/ground"


def test_shipment_repeat_returns_200_and_one_row(api, order):
    fields = {"lines": [{"sku": TEE, "quantity": 2}], "shipped_at": "2024-11-05T09:00:00Z"}
    first = ship(api, order, **fields)

    second = ship(api, order, **fields)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == first.json()
    assert Shipment.objects.count() == 1
    assert order.events.filter(kind="shipment.recorded").count() == 1


def test_shipment_repeat_without_time_is_same(api, order):
    ship(api, order, shipped_at="2024-11-05T09:00:00Z")

    response = ship(api, order)

    assert response.status_code == 200


def test_shipment_repeat_with_other_content_is_409(api, order):
    ship(api, order, lines=[{"sku": TEE, "quantity": 2}], carrier_code="UPS Ground")

    response = ship(api, order, lines=[{"sku": TEE, "quantity": 1}], carrier_code="UPS Ground")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "id_reused"
    assert error["message"] == (
        f"The shipment 'S1' of order {order.pk} was already recorded with a different lines. "
        "Send the same content to repeat it, or a new id for a new shipment."
    )
    assert Shipment.objects.count() == 1


def test_same_shipment_id_on_other_order_is_new(api, order, post_webhook):
    body = as_body(order_payload(order_id=5837219471391))
    post_webhook(body, signed_headers(body, webhook_id="wh-other"))
    other = Order.objects.exclude(pk=order.pk).get()
    ship(api, order)

    response = ship(api, other)

    assert response.status_code == 201
    assert Shipment.objects.count() == 2


@pytest.mark.parametrize(
    ("shipments", "expected_duplicates"),
    [
        # Ordered: 2 x TEE, 1 x MUG.
        ([[(TEE, 2), (MUG, 1)], [(TEE, 2), (MUG, 1)]], [False, True]),
        ([[(TEE, 1)], [(TEE, 1)]], [False, False]),
        ([[(TEE, 1)], [(TEE, 1)], [(TEE, 1)]], [False, False, True]),
        ([[(TEE, 2)], [(MUG, 1)]], [False, False]),
        # The mug was never shipped, so the second parcel is not a plain repeat.
        ([[(TEE, 2)], [(TEE, 1), (MUG, 1)]], [False, False]),
        ([[(TEE, 2)], [(TEE, 2)], [(TEE, 1)]], [False, True, True]),
        # Without lines and without tracking numbers nothing says the parcels are the same.
        ([[], []], [False, False]),
        ([[(TEE, 2)], []], [False, False]),
        ([[], [(TEE, 2)]], [False, False]),
    ],
)
def test_duplicate_shipment_by_quantity(api, order, shipments, expected_duplicates):
    for index, lines in enumerate(shipments):
        body_lines = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
        response = ship(api, order, f"S{index}", lines=body_lines)
        assert response.status_code == 201, response.content

    found = list(Shipment.objects.order_by("pk").values_list("is_duplicate", flat=True))
    assert found == expected_duplicates


@pytest.mark.parametrize(
    ("parcels", "expected_duplicates"),
    [
        # (carrier_code, tracking_number, lines) per shipment, in the order they arrive.
        # A two-box order: two tracking numbers, two parcels.
        ([("UPS", "1Z001", None), ("UPS", "1Z002", None)], [False, False]),
        ([("UPS", "1Z001", None), ("UPS", "1Z001", None)], [False, True]),
        ([("UPS", "1Z001", None), ("ups", "1z001", None)], [False, True]),
        # Both name a carrier and they differ: another carrier's number space.
        ([("UPS", "1Z001", None), ("FedEx", "1Z001", None)], [False, False]),
        # Only one names a carrier: the tracking number decides.
        ([("", "1Z001", None), ("UPS", "1Z001", None)], [False, True]),
        ([("UPS", "1Z001", None), ("", "1Z001", None)], [False, True]),
        # The same label sent again without its lines.
        ([("UPS", "1Z001", [(TEE, 2)]), ("UPS", "1Z001", None)], [False, True]),
        ([("UPS", "", None), ("UPS", "", None)], [False, False]),
    ],
)
def test_duplicate_without_lines_by_tracking(api, order, parcels, expected_duplicates):
    for index, (carrier_code, tracking_number, lines) in enumerate(parcels):
        fields = {"carrier_code": carrier_code, "tracking_number": tracking_number}
        if lines is not None:
            fields["lines"] = [{"sku": sku, "quantity": quantity} for sku, quantity in lines]
        response = ship(api, order, f"S{index}", **fields)
        assert response.status_code == 201, response.content

    found = list(Shipment.objects.order_by("pk").values_list("is_duplicate", flat=True))
    assert found == expected_duplicates


def test_repeated_tracking_points_at_original(api, order):
    ship(api, order, "S1", carrier_code="UPS", tracking_number="1Z001")
    ship(api, order, "S2", carrier_code="UPS", tracking_number="1Z002")
    ship(api, order, "S3", carrier_code="UPS", tracking_number="1Z001")

    response = ship(api, order, "S4", tracking_number="1Z001")

    first = Shipment.objects.get(shipment_id="S1")
    assert Shipment.objects.get(shipment_id="S2").is_duplicate is False
    assert Shipment.objects.get(shipment_id="S3").duplicate_of == first
    assert response.json()["is_duplicate"] is True
    assert response.json()["duplicate_of"] == first.pk


def test_same_tracking_on_other_order_is_not_duplicate(api, order, post_webhook):
    body = as_body(order_payload(order_id=5837219471391))
    post_webhook(body, signed_headers(body, webhook_id="wh-other"))
    other = Order.objects.exclude(pk=order.pk).get()
    ship(api, order, "S1", carrier_code="UPS", tracking_number="1Z001")

    response = ship(api, other, "S1", carrier_code="UPS", tracking_number="1Z001")

    assert response.json()["is_duplicate"] is False


def test_duplicate_points_at_first_shipment(api, order):
    ship(api, order, "S1", lines=[{"sku": TEE, "quantity": 2}])
    ship(api, order, "S2", lines=[{"sku": MUG, "quantity": 1}])

    response = ship(api, order, "S3", lines=[{"sku": TEE, "quantity": 1}])

    first = Shipment.objects.get(shipment_id="S1")
    assert response.json()["is_duplicate"] is True
    assert response.json()["duplicate_of"] == first.pk
    assert "repeats shipment S1" in order.events.filter(kind="shipment.recorded").last().message


def test_address_corrected_before_shipping(api, order):
    order_event_add(order=order, kind="order.address_corrected", message="Corrected.")

    earlier = ship(api, order, "S1", shipped_at=(timezone.now() - timedelta(hours=1)).isoformat())
    later = ship(api, order, "S2", shipped_at=(timezone.now() + timedelta(seconds=1)).isoformat())

    assert earlier.json()["address_corrected"] is False
    assert later.json()["address_corrected"] is True


def test_applied_address_decision_counts_as_corrected(api, order):
    order_event_add(order=order, kind="order.shipping_address_changed", message="Changed.")

    response = ship(api, order)

    assert response.json()["address_corrected"] is True


def test_shipment_of_held_order_is_noted(api, order):
    Order.objects.filter(pk=order.pk).update(status="on_hold")

    response = ship(api, order)

    assert response.status_code == 201
    message = order.events.get(kind="shipment.recorded").message
    assert message == "Shipment S1 shipped with no carrier given (the order is on hold)."


def test_shipment_with_exceptions(api, reporter, order):
    response = ship(
        api,
        order,
        shipped_at="2024-11-05T09:00:00Z",
        exceptions=[
            {"stage": "pick", "reason": "wrong_item", "note": "Picked the white tee first"},
            {"stage": "pack", "reason": "damaged"},
        ],
    )

    assert response.status_code == 201, response.content
    assert [(e["stage"], e["reason"]) for e in response.json()["exceptions"]] == [
        ("pick", "wrong_item"),
        ("pack", "damaged"),
    ]
    shipment = Shipment.objects.get()
    exceptions = FulfilmentException.objects.filter(shipment=shipment)
    assert exceptions.count() == 2
    assert {e.occurred_at for e in exceptions} == {shipment.shipped_at}
    assert order.events.filter(kind="fulfilment_exception.recorded").count() == 2
    assert AuditEntry.objects.filter(action="fulfilment_exception.recorded").count() == 2


def test_shipment_repeat_with_new_exception_is_409(api, order):
    ship(api, order, exceptions=[{"stage": "pick", "reason": "wrong_item"}])

    same = ship(api, order, exceptions=[{"stage": "pick", "reason": "wrong_item"}])
    more = ship(
        api,
        order,
        exceptions=[
            {"stage": "pick", "reason": "wrong_item"},
            {"stage": "ship", "reason": "late"},
        ],
    )

    assert same.status_code == 200
    assert more.status_code == 409
    assert "exceptions" in more.json()["error"]["message"]
    assert FulfilmentException.objects.count() == 1


def test_unknown_sku_names_the_line(api, order):
    response = ship(api, order, lines=[{"sku": TEE, "quantity": 1}, {"sku": "NOPE", "quantity": 1}])

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_sku"
    assert error["fields"] == {
        "lines[1].sku": ["Line 2: no SKU with code 'NOPE'; use the canonical SKU code."]
    }
    assert Shipment.objects.count() == 0


def _future() -> str:
    return (timezone.now() + timedelta(minutes=10)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"shipment_id": "S1"}, "channel"),
        ({"order": "abc", "shipment_id": "S1"}, "order"),
        ({"order": 10**30, "shipment_id": "S1"}, "order"),
        ({"order": 999999, "shipment_id": "S1"}, "order"),
        ({"order": -1, "shipment_id": "S1"}, "order"),
        ({"order": True, "shipment_id": "S1"}, "order"),
        ({"channel": "nope", "channel_order_id": "1", "shipment_id": "S1"}, "channel"),
        ({"channel": "shop", "channel_order_id": "nope", "shipment_id": "S1"}, "channel_order_id"),
        ({"channel": "shop", "shipment_id": "S1"}, "channel_order_id"),
        ({"ORDER": True, "shipment_id": "S1", "channel": "shop"}, "order"),
        ({"ORDER": True}, "shipment_id"),
        ({"ORDER": True, "shipment_id": ""}, "shipment_id"),
        ({"ORDER": True, "shipment_id": "x" * 101}, "shipment_id"),
        ({"ORDER": True, "shipment_id": "S\x001"}, "shipment_id"),
        ({"ORDER": True, "shipment_id": ["S1"]}, "shipment_id"),
        ({"ORDER": True, "shipment_id": "S1", "lines": "TEE"}, "lines"),
        ({"ORDER": True, "shipment_id": "S1", "lines": [{"sku": TEE}]}, "lines[0].quantity"),
        (
            {"ORDER": True, "shipment_id": "S1", "lines": [{"sku": TEE, "quantity": "two"}]},
            "lines[0].quantity",
        ),
        (
            {"ORDER": True, "shipment_id": "S1", "lines": [{"sku": TEE, "quantity": 0}]},
            "lines[0].quantity",
        ),
        (
            {"ORDER": True, "shipment_id": "S1", "lines": [{"sku": TEE, "quantity": 10**20}]},
            "lines[0].quantity",
        ),
        ({"ORDER": True, "shipment_id": "S1", "lines": [TEE]}, "lines[0]"),
        ({"ORDER": True, "shipment_id": "S1", "shipped_at": "2024-11-05T09:00:00"}, "shipped_at"),
        ({"ORDER": True, "shipment_id": "S1", "shipped_at": "yesterday"}, "shipped_at"),
        ({"ORDER": True, "shipment_id": "S1", "shipped_at": 1730797200}, "shipped_at"),
        ({"ORDER": True, "shipment_id": "S1", "shipped_at": "FUTURE"}, "shipped_at"),
        (
            {"ORDER": True, "shipment_id": "S1", "shipped_at": "9999-12-31T23:59:59-05:00"},
            "shipped_at",
        ),
        ({"ORDER": True, "shipment_id": "S1", "carrier_code": "c" * 65}, "carrier_code"),
        (
            {
                "ORDER": True,
                "shipment_id": "S1",
                "exceptions": [{"stage": "fly", "reason": "late"}],
            },
            "exceptions[0].stage",
        ),
        (
            {
                "ORDER": True,
                "shipment_id": "S1",
                "exceptions": [{"stage": "pick", "reason": "late", "occurred_at": "FUTURE"}],
            },
            "exceptions[0].occurred_at",
        ),
    ],
)
def test_bad_shipment_input_is_400_with_field(api, order, body, field):
    # "ORDER" stands for this test's order id, "FUTURE" for a time ten minutes ahead.
    if body.pop("ORDER", False):
        body["order"] = order.pk
    if body.get("shipped_at") == "FUTURE":
        body["shipped_at"] = _future()
    for item in body.get("exceptions", []):
        if item.get("occurred_at") == "FUTURE":
            item["occurred_at"] = _future()

    response = api.post("/api/v1/shipments/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in error_fields(response), response.json()
    assert Shipment.objects.count() == 0


def test_naive_time_message_asks_for_offset(api, order):
    response = ship(api, order, shipped_at="2024-11-05T09:00:00")

    assert error_fields(response)["shipped_at"] == [
        "Give the time with its timezone offset, e.g. 2024-11-04T15:20:00Z."
    ]


@pytest.mark.parametrize("shipped_at", ["0001-01-01T00:00:00Z", "2020-01-01T00:00:00Z"])
def test_time_long_ago_is_refused(api, order, shipped_at):
    response = ship(api, order, shipped_at=shipped_at)

    assert response.status_code == 400
    assert "more than 400 days ago" in error_fields(response)["shipped_at"][0]
    assert Shipment.objects.count() == 0


def test_time_within_the_last_year_is_accepted(api, order):
    response = ship(api, order, shipped_at=(timezone.now() - timedelta(days=399)).isoformat())

    assert response.status_code == 201


def test_future_time_within_clock_skew_is_accepted(api, order):
    response = ship(api, order, shipped_at=(timezone.now() + timedelta(minutes=4)).isoformat())

    assert response.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        '{"order": 1, "shipment_id": "\\ud800"}',
        '{"order": 1, "shipment_id": "S1", "lines": [{"sku": "\\u0000", "quantity": 1}]}',
        "[]",
        '"text"',
        "{",
        "[" * 100_000,
    ],
)
def test_malformed_bodies_are_400(api, order, body):
    response = post_raw(api, "/api/v1/shipments/", body)

    assert response.status_code == 400
    assert "error" in response.json()


def test_form_encoded_body_is_415(api, order):
    response = api.post("/api/v1/shipments/", {"order": order.pk, "shipment_id": "S1"})

    assert response.status_code == 415


# --- Shipment status -----------------------------------------------------------------------


def _shipment(api, order) -> dict:
    return ship(api, order, shipped_at=(timezone.now() - timedelta(days=1)).isoformat()).json()


def test_status_delivered_sets_time(api, reporter, order):
    shipment = _shipment(api, order)

    response = api.patch(
        f"/api/v1/shipments/{shipment['id']}/", {"status": "delivered"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "delivered"
    assert response.json()["status_changed_at"] is not None
    event = order.events.get(kind="shipment.status_changed")
    assert event.actor == reporter
    audit = AuditEntry.objects.get(action="shipment.status_changed")
    assert audit.before["status"] == "shipped"
    assert audit.after["status"] == "delivered"


def test_status_repeat_changes_nothing(api, order):
    shipment = _shipment(api, order)
    url = f"/api/v1/shipments/{shipment['id']}/"
    api.patch(url, {"status": "delivery_failed"}, format="json")

    response = api.patch(url, {"status": "delivery_failed"}, format="json")

    assert response.status_code == 200
    assert order.events.filter(kind="shipment.status_changed").count() == 1


@pytest.mark.parametrize(
    ("steps", "last_status"),
    [
        (["delivery_failed", "delivered"], 200),
        (["delivery_failed", "returned_to_sender"], 200),
        (["delivered", "delivery_failed"], 409),
        (["delivered", "returned_to_sender"], 409),
        (["returned_to_sender", "delivered"], 409),
    ],
)
def test_status_transitions(api, order, steps, last_status):
    shipment = _shipment(api, order)
    url = f"/api/v1/shipments/{shipment['id']}/"

    responses = [api.patch(url, {"status": status}, format="json") for status in steps]

    assert responses[-1].status_code == last_status
    if last_status == 409:
        assert responses[-1].json()["error"]["code"] == "status_final"
        assert Shipment.objects.get().status == steps[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "shipped"}, "status"),
        ({"status": "lost"}, "status"),
        ({"status": "delivered", "status_changed_at": "2024-11-05T09:00:00"}, "status_changed_at"),
        ({"status": "delivered", "status_changed_at": "FUTURE"}, "status_changed_at"),
        # Before the shipment was shipped.
        ({"status": "delivered", "status_changed_at": "2000-01-01T00:00:00Z"}, "status_changed_at"),
    ],
)
def test_bad_status_input_is_400(api, order, body, field):
    shipment = _shipment(api, order)
    if body.get("status_changed_at") == "FUTURE":
        body["status_changed_at"] = _future()

    response = api.patch(f"/api/v1/shipments/{shipment['id']}/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in error_fields(response)


def test_status_of_unknown_shipment_is_404(api, order):
    response = api.patch("/api/v1/shipments/999999/", {"status": "delivered"}, format="json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_put_is_not_allowed(api, order):
    shipment = _shipment(api, order)

    response = api.put(f"/api/v1/shipments/{shipment['id']}/", {"status": "delivered"})

    assert response.status_code == 405


# --- Listing shipments ---------------------------------------------------------------------


def test_list_filters_and_paginates(api, order):
    ship(api, order, "OLD", shipped_at="2024-11-01T09:00:00Z")
    ship(api, order, "NEW", shipped_at="2024-11-05T09:00:00Z")
    new = Shipment.objects.get(shipment_id="NEW")
    api.patch(f"/api/v1/shipments/{new.pk}/", {"status": "delivered"}, format="json")

    by_time = api.get("/api/v1/shipments/?shipped_after=2024-11-03T00:00:00Z").json()
    by_status = api.get("/api/v1/shipments/?status=shipped").json()
    by_order = api.get(f"/api/v1/shipments/?order={order.pk}&channel=shop&page_size=1").json()

    assert [s["shipment_id"] for s in by_time["results"]] == ["NEW"]
    assert [s["shipment_id"] for s in by_status["results"]] == ["OLD"]
    assert by_order["count"] == 2
    assert len(by_order["results"]) == 1
    assert by_order["next"] is not None


@pytest.mark.parametrize(
    "query",
    ["status=lost", "shipped_after=yesterday", "order=abc", "order=1e400", f"order={10**30}"],
)
def test_list_rejects_bad_filter(api, order, query):
    response = api.get(f"/api/v1/shipments/?{query}")

    assert response.status_code == 400


# --- Fulfilment exceptions -----------------------------------------------------------------


def test_fulfilment_exception_recorded(api, reporter, order):
    ship(api, order, "S1")

    response = api.post(
        "/api/v1/fulfilment-exceptions/",
        {"order": order.pk, "shipment_id": "S1", "stage": "ship", "reason": "wrong_carrier"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["shipment_id"] == "S1"
    assert body["stage"] == "ship"
    exception = FulfilmentException.objects.get()
    assert exception.channel == order.channel
    assert exception.created_by == reporter
    assert order.events.filter(kind="fulfilment_exception.recorded").count() == 1
    assert AuditEntry.objects.filter(
        action="fulfilment_exception.recorded", target_id=str(exception.pk)
    ).exists()


def test_exception_retry_with_time_is_recorded_once(api, order):
    body = {
        "order": order.pk,
        "stage": "pick",
        "reason": "missing_item",
        "occurred_at": "2024-11-05T08:00:00Z",
    }

    first = api.post("/api/v1/fulfilment-exceptions/", body, format="json")
    second = api.post("/api/v1/fulfilment-exceptions/", body, format="json")

    assert (first.status_code, second.status_code) == (201, 200)
    assert FulfilmentException.objects.count() == 1


def test_exception_without_time_is_recorded_each_time(api, order):
    body = {"order": order.pk, "stage": "pick", "reason": "missing_item"}

    first = api.post("/api/v1/fulfilment-exceptions/", body, format="json")
    second = api.post("/api/v1/fulfilment-exceptions/", body, format="json")

    assert (first.status_code, second.status_code) == (201, 201)
    assert FulfilmentException.objects.count() == 2


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        (
            {"stage": "fly", "reason": "late"},
            "stage",
            '"fly" is not a valid stage; use one of: pick, pack, ship.',
        ),
        ({"stage": "pick", "reason": "sad"}, "reason", None),
        ({"stage": "pick"}, "reason", None),
        ({"stage": "pick", "reason": "late", "note": "x" * 2001}, "note", None),
        (
            {"stage": "pick", "reason": "late", "shipment_id": "S9"},
            "shipment_id",
            "Order ORDER has no shipment 'S9'; record the shipment first or leave shipment_id out.",
        ),
    ],
)
def test_bad_exception_input_is_400(api, order, extra, field, message):
    response = api.post(
        "/api/v1/fulfilment-exceptions/", {"order": order.pk, **extra}, format="json"
    )

    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    if message:
        assert error_fields(response)[field] == [message.replace("ORDER", str(order.pk))]


# --- Returns -------------------------------------------------------------------------------


ATTRIBUTION = {
    # reason: (without a substituted SKU, with one)
    "wrong_item": ("fulfilment", "fulfilment"),
    "wrong_quantity": ("fulfilment", "fulfilment"),
    "damaged_in_transit": ("fulfilment", "fulfilment"),
    "late_delivery": ("fulfilment", "fulfilment"),
    "substitute_unwanted": ("substitution", "substitution"),
    "defective": ("product", "product"),
    "not_as_described": ("product", "substitution"),
    "size_or_fit": ("customer", "substitution"),
    "changed_mind": ("customer", "substitution"),
    "other": ("customer", "substitution"),
}


def test_attribution_table_covers_every_reason():
    assert set(ATTRIBUTION) == set(ReturnReason.values)
    assert {r for r, (plain, _) in ATTRIBUTION.items() if plain == "fulfilment"} == set(
        FULFILMENT_RETURN_REASONS
    )


@pytest.mark.parametrize("reason", sorted(ATTRIBUTION))
def test_return_attribution_rule(reason):
    plain, substituted = ATTRIBUTION[reason]

    assert return_attribution(reason, involves_substitution=False) == ReturnAttribution(plain)
    assert return_attribution(reason, involves_substitution=True) == ReturnAttribution(substituted)


@pytest.mark.parametrize("reason", sorted(ATTRIBUTION))
def test_return_reason_attributed_through_api(api, order, reason):
    response = api.post(
        "/api/v1/returns/",
        {
            "order": order.pk,
            "return_id": "R1",
            "reason": reason,
            "lines": [{"sku": TEE, "quantity": 1}],
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert response.json()["attributed_to"] == ATTRIBUTION[reason][0]
    assert response.json()["involves_substitution"] is False


def _substitute(order: Order, position: int, code: str) -> None:
    line = order.lines.get(position=position)
    line.order = order
    with transaction.atomic():
        order_line_sku_substitute(
            line=line,
            sku=Sku.objects.get(code=code),
            actor=None,
            system_label="ai:test",
            reason="t",
        )


def test_returned_substitute_involves_substitution(api, order):
    tee_line = order.lines.get(sku__code=TEE).position
    _substitute(order, tee_line, TEE_WHITE)

    substitute = api.post(
        "/api/v1/returns/",
        {
            "order": order.pk,
            "return_id": "R1",
            "reason": "size_or_fit",
            "lines": [{"sku": TEE_WHITE, "quantity": 1}],
        },
        format="json",
    ).json()
    other_line = api.post(
        "/api/v1/returns/",
        {
            "order": order.pk,
            "return_id": "R2",
            "reason": "size_or_fit",
            "lines": [{"sku": MUG, "quantity": 1}],
        },
        format="json",
    ).json()
    whole_order = api.post(
        "/api/v1/returns/",
        {"order": order.pk, "return_id": "R3", "reason": "defective"},
        format="json",
    ).json()

    assert (substitute["involves_substitution"], substitute["attributed_to"]) == (
        True,
        "substitution",
    )
    assert (other_line["involves_substitution"], other_line["attributed_to"]) == (False, "customer")
    assert (whole_order["involves_substitution"], whole_order["attributed_to"]) == (True, "product")


def test_substitution_switched_back_is_not_involved(api, order):
    tee_line = order.lines.get(sku__code=TEE).position
    _substitute(order, tee_line, TEE_WHITE)
    _substitute(order, tee_line, TEE)

    response = api.post(
        "/api/v1/returns/",
        {"order": order.pk, "return_id": "R1", "reason": "changed_mind"},
        format="json",
    )

    assert response.json()["involves_substitution"] is False
    assert response.json()["attributed_to"] == "customer"


def test_return_of_sku_not_on_order_is_accepted(api, order):
    response = api.post(
        "/api/v1/returns/",
        {
            "order": order.pk,
            "return_id": "R1",
            "reason": "wrong_item",
            "lines": [{"sku": TEE_WHITE, "quantity": 1}],
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["attributed_to"] == "fulfilment"


def test_return_repeat_and_conflict(api, reporter, order):
    body = {"order": order.pk, "return_id": "R1", "reason": "defective", "note": "Cracked"}
    first = api.post("/api/v1/returns/", body, format="json")

    again = api.post("/api/v1/returns/", body, format="json")
    changed = api.post("/api/v1/returns/", {**body, "reason": "changed_mind"}, format="json")

    assert (first.status_code, again.status_code, changed.status_code) == (201, 200, 409)
    assert changed.json()["error"]["code"] == "id_reused"
    assert "reason" in changed.json()["error"]["message"]
    assert OrderReturn.objects.count() == 1
    assert order.events.filter(kind="return.recorded").count() == 1
    audit = AuditEntry.objects.get(action="return.recorded")
    assert audit.actor == reporter
    assert audit.after["attributed_to"] == "product"


def test_unknown_return_reason_lists_valid_codes(api, order):
    response = api.post(
        "/api/v1/returns/", {"order": order.pk, "return_id": "R1", "reason": "meh"}, format="json"
    )

    assert response.status_code == 400
    assert error_fields(response)["reason"] == [
        '"meh" is not a valid reason code; use one of: wrong_item, wrong_quantity, '
        "damaged_in_transit, late_delivery, substitute_unwanted, defective, not_as_described, "
        "size_or_fit, changed_mind, other."
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"reason": "other"}, "return_id"),
        ({"return_id": "R1"}, "reason"),
        (
            {"return_id": "R1", "reason": "other", "lines": [{"sku": "NOPE", "quantity": 1}]},
            "lines[0].sku",
        ),
        ({"return_id": "R1", "reason": "other", "received_at": "2024-11-05"}, "received_at"),
        ({"return_id": "R1", "reason": "other", "received_at": "FUTURE"}, "received_at"),
        ({"return_id": "R1", "reason": "other", "note": "a\x00b"}, "note"),
    ],
)
def test_bad_return_input_is_400(api, order, extra, field):
    if extra.get("received_at") == "FUTURE":
        extra["received_at"] = _future()

    response = api.post("/api/v1/returns/", {"order": order.pk, **extra}, format="json")

    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert OrderReturn.objects.count() == 0


# --- Chargebacks ---------------------------------------------------------------------------


def chargeback(api, order, **fields):
    body = {"order": order.pk, "chargeback_id": "CB1", "amount": "49.99", "currency": "USD"}
    return api.post("/api/v1/chargebacks/", {**body, **fields}, format="json")


def test_chargeback_recorded(api, reporter, order):
    response = chargeback(api, order, reason="4853 Cardholder dispute")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["amount"], body["currency"], body["reason"]) == (
        "49.99",
        "USD",
        "4853 Cardholder dispute",
    )
    stored = Chargeback.objects.get()
    assert str(stored.amount) == "49.990"
    assert order.events.get(kind="chargeback.recorded").message == "Chargeback CB1: USD 49.99."
    audit = AuditEntry.objects.get(action="chargeback.recorded")
    assert audit.after["amount"] == "49.99"
    assert audit.actor == reporter


def test_chargeback_in_zero_decimal_currency(api, order):
    response = chargeback(api, order, amount="2980", currency="JPY")

    assert response.status_code == 201
    assert response.json()["amount"] == "2980"


def test_chargeback_repeat_and_conflict(api, order):
    first = chargeback(api, order)
    again = chargeback(api, order, amount="49.990")
    changed = chargeback(api, order, amount="50.00")

    assert (first.status_code, again.status_code, changed.status_code) == (201, 200, 409)
    assert "amount" in changed.json()["error"]["message"]
    assert Chargeback.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"amount": "0"}, "amount", "The amount must be greater than 0."),
        ({"amount": "-5.00"}, "amount", "The amount must be greater than 0."),
        ({"amount": "abc"}, "amount", None),
        ({"amount": "NaN"}, "amount", None),
        ({"amount": "Infinity"}, "amount", None),
        ({"amount": 1e20}, "amount", None),
        ({"amount": "123456789012345"}, "amount", None),
        ({"amount": "1.0001"}, "amount", None),
        ({"amount": "10.001"}, "amount", "USD amounts have at most 2 decimal places; got 10.001."),
        (
            {"amount": "100.5", "currency": "JPY"},
            "amount",
            "JPY amounts have at most 0 decimal places; got 100.5.",
        ),
        ({"amount": True}, "amount", None),
        ({"currency": "usd"}, "currency", None),
        ({"currency": "ZZZ"}, "currency", None),
        ({"currency": "XAU"}, "currency", None),
        ({"currency": "DOLLARS"}, "currency", None),
        ({"reason": "r" * 101}, "reason", None),
        ({"chargeback_id": ""}, "chargeback_id", None),
    ],
)
def test_bad_chargeback_money_is_400(api, order, fields, field, message):
    response = chargeback(api, order, **fields)

    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    if message:
        assert error_fields(response)[field] == [message]
    assert Chargeback.objects.count() == 0


def test_chargeback_amount_as_json_number(api, order):
    response = post_raw(
        api,
        "/api/v1/chargebacks/",
        json.dumps({"order": order.pk, "chargeback_id": "CB1", "amount": 12.5, "currency": "EUR"}),
    )

    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "12.50"


# --- Permissions ---------------------------------------------------------------------------


ENDPOINTS = [
    ("/api/v1/shipments/", {"shipment_id": "S1"}),
    ("/api/v1/fulfilment-exceptions/", {"stage": "pick", "reason": "other"}),
    ("/api/v1/returns/", {"return_id": "R1", "reason": "other"}),
    ("/api/v1/chargebacks/", {"chargeback_id": "C1", "amount": "1.00", "currency": "USD"}),
]


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_integration_with_grant_may_post(api, order, path, body):
    response = api.post(path, {"order": order.pk, **body}, format="json")

    assert response.status_code == 201, response.content


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_integration_without_grant_is_403(order, path, body):
    client = token_client(make_user("other-3pl", "integration"))

    response = client.post(path, {"order": order.pk, **body}, format="json")

    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "channel_not_allowed",
        "message": "This user may not report for channel 'shop'.",
        "fields": {},
    }


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_agent_may_not_post(order, path, body):
    client = token_client(make_user("alice", "cs_agent"))

    response = client.post(path, {"order": order.pk, **body}, format="json")

    assert response.status_code == 403


@pytest.mark.parametrize(("path", "body"), ENDPOINTS)
def test_anonymous_is_401(order, path, body):
    post = APIClient().post(path, {"order": order.pk, **body}, format="json")
    listing = APIClient().get(path)

    assert post.status_code == 401
    assert listing.status_code == 401
    assert post.json()["error"]["code"] == "not_authenticated"


def test_staff_with_add_permission_posts_for_any_channel(order):
    user = make_user("ops-bot", None)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(Permission.objects.get(codename="add_shipment"))

    response = token_client(user).post(
        "/api/v1/shipments/", {"order": order.pk, "shipment_id": "S1"}, format="json"
    )

    assert response.status_code == 201


def test_integration_status_change_needs_grant(api, order):
    shipment = _shipment(api, order)
    other = token_client(make_user("other-3pl", "integration"))

    response = other.patch(
        f"/api/v1/shipments/{shipment['id']}/", {"status": "delivered"}, format="json"
    )

    assert response.status_code == 404


def test_reads_are_scoped_to_granted_channels(api, order):
    ship(api, order)
    chargeback(api, order)
    elsewhere = Channel.objects.create(kind=ChannelKind.CANONICAL, code="elsewhere")
    other = make_user("other-3pl", "integration")
    ChannelApiGrant.objects.create(user=other, channel=elsewhere)
    manager = staff_user("morgan", "cs_manager")

    other_client = token_client(other)

    assert api.get("/api/v1/shipments/").json()["count"] == 1
    assert api.get("/api/v1/chargebacks/").json()["count"] == 1
    assert other_client.get("/api/v1/shipments/").json()["count"] == 0
    assert other_client.get("/api/v1/chargebacks/").json()["count"] == 0
    assert token_client(manager).get("/api/v1/shipments/").json()["count"] == 1
    assert token_client(make_user("alice", "cs_agent")).get("/api/v1/shipments/").status_code == 403


def test_list_query_count_is_flat(api, order):
    from django.test.utils import CaptureQueriesContext

    ship(api, order, "S1", exceptions=[{"stage": "pick", "reason": "late"}])
    with CaptureQueriesContext(connection) as few:
        api.get("/api/v1/shipments/")
    for number in range(2, 8):
        ship(api, order, f"S{number}", exceptions=[{"stage": "pack", "reason": "damaged"}])
    with CaptureQueriesContext(connection) as many:
        response = api.get("/api/v1/shipments/")

    assert response.json()["count"] == 7
    assert len(many.captured_queries) == len(few.captured_queries)


# --- Admin ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["shipment", "fulfilmentexception", "orderreturn", "chargeback"])
def test_admin_lists_facts_read_only(client, api, order, model):
    ship(api, order, "PKG-77", exceptions=[{"stage": "pick", "reason": "late"}])
    api.post(
        "/api/v1/returns/", {"order": order.pk, "return_id": "R1", "reason": "other"}, format="json"
    )
    chargeback(api, order)
    client.force_login(staff_user("olga", "ops_manager"))
    listing = reverse(f"admin:orders_{model}_changelist")

    found = client.get(listing, {"q": order.order_number})
    missed = client.get(listing, {"q": "no-such-order"})
    add = client.get(reverse(f"admin:orders_{model}_add"))

    assert found.status_code == 200
    assert found.context["cl"].result_count == 1
    assert missed.context["cl"].result_count == 0
    assert add.status_code == 403
    record = found.context["cl"].result_list[0]
    change = client.post(reverse(f"admin:orders_{model}_change", args=[record.pk]), {})
    assert change.status_code == 403
    delete = client.post(reverse(f"admin:orders_{model}_delete", args=[record.pk]), {"post": "yes"})
    assert delete.status_code == 403


def test_admin_finds_shipment_by_its_id(client, api, order):
    ship(api, order, "PKG-77")
    ship(api, order, "PKG-78")
    client.force_login(staff_user("carol", "cs_manager"))

    response = client.get(reverse("admin:orders_shipment_changelist"), {"q": "PKG-77"})

    assert [s.shipment_id for s in response.context["cl"].result_list] == ["PKG-77"]


# --- Idempotency-Key -----------------------------------------------------------------------


def test_idempotency_key_replays_first_response(api, order):
    body = {"order": order.pk, "stage": "pick", "reason": "missing_item"}
    headers = {"Idempotency-Key": "exc-1"}

    first = api.post("/api/v1/fulfilment-exceptions/", body, format="json", headers=headers)
    second = api.post("/api/v1/fulfilment-exceptions/", body, format="json", headers=headers)

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json() == first.json()
    assert FulfilmentException.objects.count() == 1


def test_idempotency_key_with_other_body_is_409(api, order):
    headers = {"Idempotency-Key": "exc-1"}
    api.post(
        "/api/v1/fulfilment-exceptions/",
        {"order": order.pk, "stage": "pick", "reason": "missing_item"},
        format="json",
        headers=headers,
    )

    response = api.post(
        "/api/v1/returns/",
        {"order": order.pk, "return_id": "R1", "reason": "other"},
        format="json",
        headers=headers,
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert OrderReturn.objects.count() == 0


def test_idempotency_key_must_be_printable(api, order):
    response = api.post(
        "/api/v1/shipments/",
        {"order": order.pk, "shipment_id": "S1"},
        format="json",
        headers={"Idempotency-Key": "k" * 151},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


# --- Concurrency ---------------------------------------------------------------------------


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
def test_concurrent_reports_record_once(order):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")
    whole_order = [{"sku": TEE, "quantity": 2}, {"sku": MUG, "quantity": 1}]

    parcels = _in_threads(
        4,
        lambda index: shipment_record(
            order=order, shipment_id=f"P{index}", user=None, lines=whole_order
        )[1],
    )
    retries = _in_threads(
        4, lambda _: shipment_record(order=order, shipment_id="P0", user=None, lines=whole_order)[1]
    )

    # The order lock makes each parcel see the ones before it: one ships, three repeat it.
    assert parcels == [True] * 4
    assert Shipment.objects.filter(is_duplicate=False).count() == 1
    assert Shipment.objects.filter(is_duplicate=True).count() == 3
    assert retries == [False] * 4
    assert Shipment.objects.count() == 4
