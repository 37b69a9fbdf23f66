"""Helpers the ingestion suites share: order bodies, stock set up, and waiting for outcomes."""

import time
from collections.abc import Callable

import pytest

from catalog.models import Channel, Sku
from inventory.models import Location, LocationKind, StockEventKind, StockLevel
from inventory.services import StockEventInput, stock_event_record
from orders.models import Delivery, DeliveryOutcome
from tests.conftest import as_body, order_payload
from tests.workers import Worker

POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 80
# The SKU of order_payload()'s line, mapped on the "shop" channel of shopify_channel.
ORDER_SKU = "TEE-CLASSIC-BLK-M"


def order_body(number: int) -> bytes:
    """A Shopify order of one unit of ORDER_SKU, with its own order id, number and customer."""
    payload = order_payload(
        order_id=6_000_000_000_000 + number,
        name=f"#R{number}",
        email=f"customer-{number}@example.com",
    )
    payload["customer"] = payload["customer"] | {"id": 8_000_000_000_000 + number}
    payload["line_items"][0] |= {"id": 14_000_000_000_000 + number, "quantity": 1}
    payload |= {"subtotal_price": "19.99", "total_price": "24.99"}
    return as_body(payload)


def warehouse_stock_set(*, sku_code: str, on_hand: int) -> tuple[Location, StockLevel]:
    """Create the warehouse "WH" and give `sku_code` `on_hand` units there, through the service."""
    location, _ = Location.objects.get_or_create(
        code="WH", defaults={"name": "Warehouse", "kind": LocationKind.WAREHOUSE}
    )
    sku = Sku.objects.get(code=sku_code)
    result = stock_event_record(
        data=StockEventInput(
            source="reliability-setup",
            event_id=f"{sku_code}-initial",
            sku=sku,
            location=location,
            kind=StockEventKind.ABSOLUTE,
            quantity=on_hand,
            version=1,
        )
    )
    assert result.event.outcome == "applied", result.event.reason
    return location, StockLevel.objects.get(sku=sku, location=location)


def wait_until_none_received(*, channel: Channel, timeout: float, logs: Callable[[], str]) -> float:
    """Poll until no delivery of `channel` is still "received", and return the seconds it took.

    Fails after `timeout` seconds with the count left and `logs()` (the workers' and servers'
    log tails), so a stuck worker shows why.
    """
    started = time.monotonic()
    pending = Delivery.objects.filter(channel=channel, outcome=DeliveryOutcome.RECEIVED)
    while time.monotonic() - started < timeout:
        if not pending.exists():
            return time.monotonic() - started
        time.sleep(POLL_INTERVAL)
    pytest.fail(
        f"{pending.count()} deliveries still had the outcome 'received' after {timeout} s of "
        f"waiting, so no worker processed them.\n{logs()}",
        pytrace=False,
    )


def worker_log_tail(worker: Worker, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a worker's log, headed for a failure message."""
    text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last {lines} lines of the log of worker {worker.nodename} ---\n{tail}"
