"""The hand-written stock level lock of reservations against the ORM queries it replaced."""

import threading

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from inventory.hygiene import check_stock
from inventory.models import StockLevel
from inventory.reservations import (
    _unreserved_levels_lock_orm,
    _unreserved_levels_lock_sql,
    order_line_reserve_stock,
)
from orders.hygiene import order_lines_are_new, order_lines_shared
from orders.models import OrderLine
from tests.inventory.conftest import MUG, TEE, TEE_WHITE

pytestmark = pytest.mark.django_db

needs_postgres = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the hand-written SQL runs on PostgreSQL only"
)


def _fields(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def _levels_as_data(levels_by_sku: dict[int, list[StockLevel]]) -> dict:
    """Each level with its location and SKU as plain field values, grouped by SKU id."""
    return {
        sku_id: [(_fields(level), _fields(level.location), _fields(level.sku)) for level in levels]
        for sku_id, levels in levels_by_sku.items()
    }


def _lines(order) -> list[OrderLine]:
    return list(order.lines.select_related("sku").order_by("position"))


@needs_postgres
def test_levels_lock_sql_equals_orm(catalog, locations, set_stock, place_order):
    # Placed before any stock exists, so no line is reserved yet.
    order = place_order((TEE, 1), (MUG, 2), (TEE_WHITE, 1), (TEE, 1))
    set_stock(TEE, "WH", 5)
    set_stock(TEE, "STORE", 3)
    set_stock(MUG, "TPL", 4)
    lines = _lines(order)
    order_line_reserve_stock(line=lines[1])

    with transaction.atomic():
        sql_already, sql_levels = _unreserved_levels_lock_sql(lines)
        orm_already, orm_levels = _unreserved_levels_lock_orm(lines)

    assert sql_already == orm_already
    assert sql_already == {lines[1].pk}
    assert _levels_as_data(sql_levels) == _levels_as_data(orm_levels)
    # The reserved mug line's SKU is left out, the untracked white tee has no levels.
    assert list(sql_levels) == [lines[0].sku_id]
    assert [level.pk for level in sql_levels[lines[0].sku_id]] == sorted(
        level.pk for level in orm_levels[lines[0].sku_id]
    )


@needs_postgres
def test_levels_lock_sql_without_levels(catalog, locations, place_order):
    order = place_order((TEE, 1), (MUG, 1))
    lines = _lines(order)

    with transaction.atomic():
        sql_result = _unreserved_levels_lock_sql(lines)
        orm_result = _unreserved_levels_lock_orm(lines)

    assert sql_result == (set(), {})
    assert orm_result == (set(), {})


@needs_postgres
def test_stock_check_reads_reservations_then_levels(catalog, locations, place_order):
    order = place_order((TEE, 1), (MUG, 1))

    with (
        transaction.atomic(),
        order_lines_shared(order),
        CaptureQueriesContext(connection) as queries,
    ):
        findings = check_stock(order=order)

    statements = [query["sql"] for query in queries.captured_queries]
    assert findings == []
    assert len(statements) == 2
    assert statements[0].startswith('SELECT "order_line_id" FROM "inventory_reservation"')
    assert statements[1].startswith('SELECT "sl"."id"')


@needs_postgres
def test_stock_check_new_lines_skip_reservations(catalog, locations, set_stock, place_order):
    order = place_order((TEE, 1), (MUG, 1))
    set_stock(TEE, "WH", 5)
    lines = _lines(order)

    with (
        transaction.atomic(),
        order_lines_shared(order, lines, lines_new=True),
        CaptureQueriesContext(connection) as queries,
    ):
        check_stock(order=order)

    statements = [query["sql"] for query in queries.captured_queries]
    assert order.reservations.count() == 1
    assert statements[0].startswith('SELECT "sl"."id"')
    assert "inventory_reservation" not in statements[0]
    assert statements[1].startswith('UPDATE "inventory_stocklevel"')


def test_lines_new_flag_lasts_only_for_the_block(catalog, place_order):
    order = place_order((TEE, 1))
    lines = _lines(order)

    with order_lines_shared(order, lines, lines_new=True):
        assert order_lines_are_new(order)
        with order_lines_shared(order):
            assert not order_lines_are_new(order)
        assert order_lines_are_new(order)
    assert not order_lines_are_new(order)
    with (
        pytest.raises(ValueError, match="lines_new=True needs the lines"),
        order_lines_shared(order, lines_new=True),
    ):
        pass


@needs_postgres
def test_stock_check_reads_once_before_writing(catalog, locations, set_stock, place_order):
    order = place_order((TEE, 1), (MUG, 1))
    set_stock(TEE, "WH", 5)

    with (
        transaction.atomic(),
        order_lines_shared(order),
        CaptureQueriesContext(connection) as queries,
    ):
        check_stock(order=order)

    statements = [query["sql"] for query in queries.captured_queries]
    assert order.reservations.count() == 1
    assert statements[0].startswith('SELECT "order_line_id"')
    assert statements[1].startswith('SELECT "sl"."id"')
    assert statements[2].startswith('UPDATE "inventory_stocklevel"')


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_levels_lock_sql_locks_only_unreserved_skus(catalog, locations, set_stock, place_order):
    order = place_order((TEE, 1), (MUG, 1))
    tee_level = set_stock(TEE, "WH", 5)
    mug_level = set_stock(MUG, "WH", 5)
    lines = _lines(order)
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        _unreserved_levels_lock_sql(lines)
    with transaction.atomic():
        order_line_reserve_stock(line=lines[1])
    outcomes: dict[int, str] = {}

    def try_lock(level_pk: int) -> None:
        try:
            with transaction.atomic():
                StockLevel.objects.select_for_update(nowait=True).get(pk=level_pk)
            outcomes[level_pk] = "free"
        except DatabaseError:
            outcomes[level_pk] = "locked"
        finally:
            connection.close()

    with transaction.atomic():
        _unreserved_levels_lock_sql(lines)
        for level in (tee_level, mug_level):
            thread = threading.Thread(target=try_lock, args=(level.pk,))
            thread.start()
            thread.join(timeout=30)

    assert outcomes[tee_level.pk] == "locked"
    # The mug line is reserved already, so its level is not locked, as with the ORM queries.
    assert outcomes[mug_level.pk] == "free"
