"""The stock hygiene check: reserve every stock-tracked line, or hold the order for review."""

from django.conf import settings

from orders.hygiene import Finding, flag, hold, order_lines_are_new
from orders.models import Order

from .models import Reservation
from .reservations import LineShortage, order_reserve_stock, review_item_open_out_of_stock
from .selectors import Availability


def check_stock(*, order: Order) -> list[Finding]:
    """Reserve stock for the order's lines; a short line opens an out-of-stock review item.

    Lines of SKUs without any stock level pass untouched. A reservation made on a stale
    snapshot is kept, and a "stale_stock" flag records the snapshot's age on the order.
    """
    result = order_reserve_stock(order=order, lines_new=order_lines_are_new(order))

    findings: list[Finding] = []
    # NOTE: one item per short line, so 500 short lines of one SKU open 500 items and queue
    # 500 substitution recommender runs. One item per SKU would also need the substitution
    # recommender and applier (guardrails), which work on an item's single order_line.
    for shortage in result.short:
        item = review_item_open_out_of_stock(order=order, shortage=shortage)
        findings.append(out_of_stock_hold(shortage, review_item=item.pk))
    for reservation, snapshot in result.stale:
        findings.append(stale_stock_flag(reservation, snapshot))
    return findings


def out_of_stock_hold(shortage: LineShortage, *, review_item: int) -> Finding:
    as_of = shortage.as_of
    return hold(
        "out_of_stock",
        shortage.describe(),
        line=shortage.line.position,
        review_item=review_item,
        data={
            "sku": shortage.line.sku.code,
            "requested": shortage.requested,
            "best_available": shortage.best_available,
            "as_of": as_of.isoformat() if as_of else None,
        },
    )


def stale_stock_flag(reservation: Reservation, snapshot: Availability) -> Finding:
    line = reservation.order_line
    counted = snapshot.as_of.isoformat() if snapshot.as_of else "never"
    return flag(
        "stale_stock",
        (
            f"Line {line.position} ({snapshot.sku}) was reserved at {snapshot.location} on a "
            f"stock count from {counted}, older than {settings.OMSGUARD_STOCK_TTL_SECONDS} s"
        ),
        line=line.position,
        data={
            "reservation": reservation.pk,
            "location": snapshot.location,
            "as_of": snapshot.as_of.isoformat() if snapshot.as_of else None,
        },
    )
