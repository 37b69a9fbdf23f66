"""The delivery insert's values (orders.webhook_channels) against Django's own field preparation.

delivery_insert_values uses some values without calling get_db_prep_save. These tests check
that every value it sends is the one the ORM would send, including the values it must hand
to Django: naive datetimes, JSON and bytes.
"""

from datetime import UTC, datetime

import pytest
from django.db import connection

from orders import webhook_channels
from orders.models import Delivery

pytestmark = [
    pytest.mark.django_db,
    # The guarded insert, and so these values, serve only PostgreSQL; elsewhere the webhook
    # view saves the delivery through the ORM.
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the guarded delivery insert is PostgreSQL's"
    ),
]


def _orm_values(delivery: Delivery, plan: webhook_channels.ValuePlan) -> list:
    return [
        field.get_db_prep_save(field.pre_save(delivery, add=True), connection=connection)
        for field, _kept_types in plan
    ]


def _comparable(value):
    # psycopg's Jsonb wrapper defines no equality, so compare the object it wraps.
    return getattr(value, "obj", value)


def _delivery(channel, **changes) -> Delivery:
    fields = {
        "channel": channel,
        "delivery_id": "wh-values",
        "topic": "orders/create",
        "event_id": "ev-1",
        "triggered_at": datetime(2026, 12, 5, 10, 0, tzinfo=UTC),
        "headers": {"X-Shopify-Topic": "orders/create"},
        "body": b'{"id": 1}',
        "signature_valid": True,
    }
    return Delivery(**(fields | changes))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({}, id="webhook delivery"),
        pytest.param({"triggered_at": None, "event_id": ""}, id="no timestamp"),
        pytest.param({"delivery_id": 12345}, id="integer for a text field"),
        pytest.param({"signature_valid": 1}, id="integer for a boolean"),
    ],
)
def test_insert_values_match_orm(channel, changes):
    plan = webhook_channels._guarded_insert_statement()[1]
    fast_delivery = _delivery(channel, **changes)
    orm_delivery = _delivery(channel, **changes)

    values = webhook_channels.delivery_insert_values(fast_delivery, plan)
    expected = _orm_values(orm_delivery, plan)

    received_at = [field.attname for field, _ in plan].index("received_at")
    # auto_now_add reads the clock on each call, so only this column's type can match.
    assert type(values[received_at]) is type(expected[received_at])
    del values[received_at], expected[received_at]
    assert [_comparable(value) for value in values] == [_comparable(v) for v in expected]
    assert [type(value) for value in values] == [type(value) for value in expected]


def test_insert_values_make_naive_datetime_aware(channel):
    plan = webhook_channels._guarded_insert_statement()[1]
    naive = datetime(2026, 12, 5, 10, 0)
    delivery = _delivery(channel, triggered_at=naive)

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        values = webhook_channels.delivery_insert_values(delivery, plan)

    triggered_at = values[[field.attname for field, _ in plan].index("triggered_at")]
    assert triggered_at.utcoffset() is not None


def test_insert_values_set_received_at(channel):
    plan = webhook_channels._guarded_insert_statement()[1]
    delivery = _delivery(channel)

    values = webhook_channels.delivery_insert_values(delivery, plan)

    received_at = values[[field.attname for field, _ in plan].index("received_at")]
    assert received_at is not None
    assert delivery.received_at == received_at
