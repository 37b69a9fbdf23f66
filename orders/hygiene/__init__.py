"""Ingestion hygiene: the checks that decide whether an order may go on without a person.

Each check takes a freshly created order (locked, inside the processing transaction) and
returns findings. A finding with severity "hold" keeps the order from being confirmed
automatically; a "flag" is recorded on the order and shown to people but holds nothing.
Checks may open review items; a hold finding then names the item in "review_item", so that
deciding the item settles exactly that hold.

Checks read the order's lines with `order.lines.all()`, which order_check_hygiene fills once
for all of them (order_lines_shared), and filter them in Python. A check that sets an order
field leaves it unsaved and lists it in CHECKED_FIELDS; order_check_hygiene writes those
with the order's new status in one UPDATE.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypedDict

from django.db.models import Prefetch, prefetch_related_objects

from ..models import Order, OrderLine


class Finding(TypedDict, total=False):
    severity: Literal["hold", "flag"]
    code: str
    message: str
    line: int
    review_item: int
    data: dict


Check = Callable[..., list[Finding]]


def hold(code: str, message: str, **extra) -> Finding:
    return Finding(severity="hold", code=code, message=message, **extra)


def flag(code: str, message: str, **extra) -> Finding:
    return Finding(severity="flag", code=code, message=message, **extra)


def hygiene_checks() -> list[Check]:
    """The checks, in the order they run."""
    from inventory.hygiene import check_stock

    from .address import check_shipping_address
    from .bidi_text import check_bidi_text
    from .carrier import check_carrier_codes
    from .escalation import check_escalations
    from .skus import check_sku_mappings
    from .totals import check_order_totals

    # The address check reads the carrier service the carrier check sets (pickup orders need
    # no address), so it runs after it.
    return [
        check_sku_mappings,
        check_order_totals,
        check_escalations,
        check_stock,
        check_carrier_codes,
        check_shipping_address,
        check_bidi_text,
    ]


def order_run_hygiene(*, order: Order) -> list[Finding]:
    findings: list[Finding] = []
    for check in hygiene_checks():
        findings.extend(check(order=order))
    return findings


# Order fields the checks set in memory; order_check_hygiene saves them with the status.
CHECKED_FIELDS = ("carrier_service", "address_score", "address_reasons")
LINES_CACHE = "lines"
# Instance attribute set while order_lines_shared shares lines inserted in this transaction.
LINES_NEW_ATTRIBUTE = "_hygiene_lines_new"


@contextmanager
def order_lines_shared(
    order: Order, lines: list[OrderLine] | None = None, *, lines_new: bool = False
) -> Iterator[None]:
    """Let every `order.lines.all()` inside the block return these lines without a query.

    `lines` must be all of the order's lines with their SKUs, in position order; without
    them they are read here with one query. The lines are forgotten when the block ends, so
    later reads of the order see its lines as they are then. `lines_new` means that the lines
    were inserted in this transaction just before the checks, so no stock is reserved for
    them yet (order_lines_are_new).
    """
    if lines_new and lines is None:
        raise ValueError("lines_new=True needs the lines that were just inserted.")
    cache = order.__dict__.setdefault("_prefetched_objects_cache", {})
    previous = cache.pop(LINES_CACHE, None)
    previous_new = order.__dict__.pop(LINES_NEW_ATTRIBUTE, False)
    if lines is None:
        queryset = OrderLine.objects.select_related("sku").order_by("position")
        prefetch_related_objects([order], Prefetch(LINES_CACHE, queryset=queryset))
    else:
        # What prefetch_related_objects stores: a queryset whose results are already known.
        queryset = order.lines.all()
        queryset._result_cache = list(lines)
        queryset._prefetch_done = True
        cache[LINES_CACHE] = queryset
    order.__dict__[LINES_NEW_ATTRIBUTE] = lines_new
    try:
        yield
    finally:
        cache.pop(LINES_CACHE, None)
        order.__dict__[LINES_NEW_ATTRIBUTE] = previous_new
        if previous is not None:
            cache[LINES_CACHE] = previous


def order_lines_are_new(order: Order) -> bool:
    """Return whether the order's shared lines were inserted in this transaction (see above)."""
    return order.__dict__.get(LINES_NEW_ATTRIBUTE, False)
