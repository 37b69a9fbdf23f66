"""Ingestion hygiene: the checks that decide whether an order may go on without a person.

Each check takes a freshly created order (locked, inside the processing transaction) and
returns findings. A finding with severity "hold" keeps the order from being confirmed
automatically; a "flag" is recorded on the order and shown to people but holds nothing.
Checks may open review items; a hold finding then names the item in "review_item", so that
deciding the item settles exactly that hold.
"""

from collections.abc import Callable
from typing import Literal, TypedDict

from ..models import Order


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
    ]


def order_run_hygiene(*, order: Order) -> list[Finding]:
    findings: list[Finding] = []
    for check in hygiene_checks():
        findings.extend(check(order=order))
    return findings
