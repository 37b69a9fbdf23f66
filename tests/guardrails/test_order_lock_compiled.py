"""order_lock_compiled runs order_lock's statement, compiled once, and builds the same Order."""

from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from guardrails.selectors import _order_lock_compile, order_lock_compiled
from orders.models import Order
from orders.services import order_lock
from tests.guardrails.conftest_decisions import (  # noqa: F401
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"
HOLD = {"severity": "hold", "code": "manual", "message": "Checked by hand"}


def _field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


@pytest.fixture(name="held_order")
def held_order_fixture(order: Order) -> Order:
    """The decisions order with a JSON list, a version and a note, so converters matter."""
    order.hold_reasons = [HOLD]
    order.version = 3
    order.save(update_fields=["hold_reasons", "version"])
    return order


@pytest.mark.django_db(transaction=True)
def test_order_lock_compiled_builds_same_order(held_order):
    with transaction.atomic():
        expected = order_lock(order_id=held_order.pk)
        ours = order_lock_compiled(order_id=held_order.pk)

    assert type(ours) is Order
    assert _field_values(ours) == _field_values(expected)
    assert ours.hold_reasons == [HOLD]
    assert ours.shipping_address == expected.shipping_address
    assert ours._state.adding is False
    assert ours._state.db == expected._state.db


@pytest.mark.django_db(transaction=True)
def test_order_lock_compiled_loads_channel(held_order):
    with transaction.atomic():
        expected = order_lock(order_id=held_order.pk)
        ours = order_lock_compiled(order_id=held_order.pk)
        with CaptureQueriesContext(connection) as reads:
            channel = ours.channel

    assert len(reads.captured_queries) == 0
    assert _field_values(channel) == _field_values(expected.channel)


@pytest.mark.django_db(transaction=True)
def test_order_lock_compiled_runs_order_lock_sql(held_order):
    with transaction.atomic():
        with CaptureQueriesContext(connection) as orm:
            order_lock(order_id=held_order.pk)
        with CaptureQueriesContext(connection) as ours:
            order_lock_compiled(order_id=held_order.pk)

    (orm_query,) = orm.captured_queries
    (our_query,) = ours.captured_queries
    # get() adds LIMIT 21 to find a second match; an id matches one row at most.
    assert our_query["sql"] == orm_query["sql"].replace(" LIMIT 21", "")
    if connection.vendor == "postgresql":
        assert our_query["sql"].endswith('FOR UPDATE OF "orders_order"')


@pytest.mark.django_db(transaction=True)
def test_order_lock_compiled_compiles_once(held_order):
    with transaction.atomic():
        order_lock_compiled(order_id=held_order.pk)
        misses = _order_lock_compile.cache_info().misses
        order_lock_compiled(order_id=held_order.pk)

    assert _order_lock_compile.cache_info().misses == misses


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order_id", [0, 2**63 - 1, 2**63, -(2**63) - 1])
def test_order_lock_compiled_unknown_id(held_order, order_id):
    with transaction.atomic(), pytest.raises(Order.DoesNotExist):
        order_lock_compiled(order_id=order_id)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order_id", ["abc", None, [1]])
def test_order_lock_compiled_odd_id_raises_as_orm(held_order, order_id):
    with transaction.atomic(), pytest.raises(Exception) as expected:
        order_lock(order_id=order_id)
    with transaction.atomic(), pytest.raises(Exception) as ours:
        order_lock_compiled(order_id=order_id)

    assert type(ours.value) is type(expected.value)


@pytest.mark.django_db(transaction=True)
def test_decision_locks_order_without_orm_compile(held_order, bot_api):
    body = proposal(held_order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"})
    with mock.patch("orders.services.order_lock", side_effect=AssertionError("ORM lock")):
        response = bot_api.post(URL, body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["order"] == held_order.pk
