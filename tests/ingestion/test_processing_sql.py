"""The hand-written SQL of order processing returns what the ORM queries it replaced returned."""

from decimal import Decimal

import pytest
from django.db import connection
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from catalog.models import ChannelSkuMapping, ExternalIdKind, Sku
from catalog.selectors import mappings_find_skus
from catalog.sql_rows import instances_insert
from orders.carriers import carrier_mapping_find
from orders.channel_holds import delivery_lock_with_channel
from orders.hygiene.escalation import (
    _priority_ids_orm,
    _routing_counts_orm,
    escalation_facts_read,
)
from orders.models import (
    CarrierCodeMapping,
    Delivery,
    Order,
    OrderEvent,
    OrderLine,
    PriorityCustomer,
)
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db

needs_postgres = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the hand-written SQL runs on PostgreSQL only"
)


MONEY_FIELDS = ("subtotal", "shipping_total", "tax_total", "discount_total", "total")


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def _order(channel, number: int, country: str, **fields) -> Order:
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-{number}",
        topic="orders/create",
        headers={},
        body=b"{}",
        signature_valid=True,
    )
    return Order.objects.create(
        channel=channel,
        delivery=delivery,
        channel_order_id=str(number),
        currency="USD",
        shipping_address={"country_code": country},
        **{name: Decimal("0") for name in MONEY_FIELDS},
        **fields,
    )


def test_delivery_lock_reads_delivery_and_channel(channel):
    channel.orders_held, channel.orders_held_reason = True, "Alert #3"
    channel.save()
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-lock",
        topic="orders/create",
        headers={"X-Test": "1"},
        body=as_body(order_payload()),
        signature_valid=True,
    )

    with CaptureQueriesContext(connection) as queries:
        locked = delivery_lock_with_channel(delivery_id=delivery.pk)
        held = locked.channel.orders_held

    assert len(queries) == 1
    assert _fields(locked) | {"body": bytes(locked.body)} == _fields(
        Delivery.objects.get(pk=delivery.pk)
    ) | {"body": bytes(delivery.body)}
    assert _fields(locked.channel) == _fields(channel.__class__.objects.get(pk=channel.pk))
    assert held is True
    if connection.vendor == "postgresql":
        assert 'FOR UPDATE OF "d" FOR SHARE OF "c"' in queries[0]["sql"]


def test_delivery_lock_unknown_id_raises(db):
    with pytest.raises(Delivery.DoesNotExist):
        delivery_lock_with_channel(delivery_id=987654)


@pytest.mark.parametrize(
    ("customer_id", "email"),
    [("C-1", ""), ("", "VIP@Example.com"), ("C-9", "vip@example.com"), ("C-9", "none@x.org")],
)
def test_escalation_facts_match_orm_queries(channel, customer_id, email):
    PriorityCustomer.objects.create(channel=channel, customer_id="C-1")
    PriorityCustomer.objects.create(channel=channel, email="vip@example.com")
    for number, country in enumerate(["US", "US", "CA", "GB"]):
        _order(channel, number, country)
    order = _order(channel, 99, "US", customer_id=customer_id, customer_email=email)

    with CaptureQueriesContext(connection) as queries:
        facts = escalation_facts_read(order)

    assert facts.priority_ids == _priority_ids_orm(order)
    assert facts.routing_counts == _routing_counts_orm(order, "US")
    assert facts.routing_counts == (4, 2)
    expected_queries = 1 if connection.vendor == "postgresql" else 2
    assert len(queries) == expected_queries


def test_escalation_facts_skip_query_without_inputs(channel):
    order = _order(channel, 1, "")

    with CaptureQueriesContext(connection) as queries:
        facts = escalation_facts_read(order)

    assert facts.priority_ids is None
    assert facts.routing_counts is None
    assert len(queries) == 0


def test_carrier_mapping_row_equals_orm(channel, carriers):
    expected = CarrierCodeMapping.objects.select_related("service__carrier").get(
        normalized_code="ups ground", channel__isnull=True, destination_country=""
    )

    found = carrier_mapping_find(channel=channel, code="UPS Ground", destination_country="US")

    assert _fields(found) == _fields(expected)
    assert _fields(found.service) == _fields(expected.service)
    assert _fields(found.service.carrier) == _fields(expected.service.carrier)


def test_mapped_sku_row_equals_orm(channel):
    sku = Sku.objects.create(
        code="HAT-1",
        title="Wool Hat",
        price=Decimal("12.50"),
        currency="USD",
        attributes={"colour": "Red"},
    )
    ChannelSkuMapping.objects.create(
        channel=channel, id_kind=ExternalIdKind.SHOPIFY_VARIANT, external_id="v-1", sku=sku
    )

    (found, missing) = mappings_find_skus(
        channel=channel,
        identifier_lists=[
            [(ExternalIdKind.SKU, "v-1"), (ExternalIdKind.SHOPIFY_VARIANT, "v-1")],
            [],
        ],
    )

    assert missing is None
    assert _fields(found) == _fields(Sku.objects.get(pk=sku.pk))
    assert found.price == Decimal("12.50")
    assert found.attributes == {"colour": "Red"}


def test_instances_insert_sets_keys_and_stores_rows(channel):
    order = _order(channel, 1, "US")
    events = [
        OrderEvent(order=order, kind=f"test.{index}", message="m", data={"n": index})
        for index in range(3)
    ]

    with CaptureQueriesContext(connection) as queries:
        inserted = instances_insert(events)

    assert [event.pk for event in inserted] == sorted(event.pk for event in inserted)
    assert all(event.pk is not None and not event._state.adding for event in inserted)
    stored = {event.pk: event for event in OrderEvent.objects.filter(order=order)}
    for event in inserted:
        assert _fields(stored[event.pk]) == _fields(event)
    assert len(queries) == 1
    if connection.vendor == "postgresql":
        assert "UNNEST" not in queries[0]["sql"]


@needs_postgres
def test_instances_insert_lines_with_sku(channel):
    order = _order(channel, 1, "US")
    sku = Sku.objects.create(code="S-1", title="S", price="1.00", currency="USD")
    lines = [
        OrderLine(
            order=order,
            position=position,
            title="t",
            quantity=1,
            unit_price=Decimal("1.000"),
            sku=sku,
            raw={"position": position},
        )
        for position in (1, 2)
    ]

    instances_insert(lines)

    stored = OrderLine.objects.filter(order=order).order_by("position")
    assert [model_to_dict(line) for line in stored] == [model_to_dict(line) for line in lines]
