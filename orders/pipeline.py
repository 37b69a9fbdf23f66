"""Processing of one recorded delivery: adapter, order creation, hygiene checks, order state."""

import json
import logging
from decimal import Decimal

from django.db import IntegrityError, OperationalError, transaction

from catalog.selectors import mapping_find_sku
from omsguard.money import is_currency, money_round

from .adapters import adapter_for
from .canonical import AdapterError, CanonicalOrder, check_order_limits, check_storable_json
from .hygiene import order_run_hygiene
from .models import Delivery, DeliveryOutcome, Order, OrderLine, OrderStatus
from .services import (
    delivery_finish,
    delivery_mark_failed,
    order_event_add,
    order_flag,
    order_hold,
    order_mark_ready,
)

logger = logging.getLogger(__name__)


def delivery_process(*, delivery_id: int, worker: str) -> Delivery:
    """Process a recorded delivery exactly once.

    The delivery row is locked for the whole run, so two workers that get the same delivery
    (a redelivered task) run one after the other, and the second sees it already processed.
    A payload that cannot become an order marks the delivery failed with the reason; it never
    raises, so a bad payload is not retried forever. Database outages (OperationalError) do
    raise, so the task retries them; any other unexpected error also marks the delivery
    failed, with the error, and is logged with its traceback.
    """
    try:
        return _delivery_process_locked(delivery_id=delivery_id, worker=worker)
    except OperationalError:
        raise
    except Exception as error:
        logger.exception("delivery processing failed", extra={"delivery": delivery_id})
        return delivery_mark_failed(
            delivery_id=delivery_id,
            worker=worker,
            error=f"unexpected {type(error).__name__}: {error}"[:2000],
        )


def _delivery_process_locked(*, delivery_id: int, worker: str) -> Delivery:
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("channel")
            .get(pk=delivery_id)
        )
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            logger.info("delivery already processed", extra={"delivery": delivery.pk})
            return delivery
        delivery.attempts += 1

        try:
            payload = _decode_json(delivery)
            check_storable_json(payload)
            canonical = adapter_for(delivery.channel.kind).parse_order(payload)
            check_order_limits(canonical)
        except AdapterError as error:
            logger.warning(
                "delivery payload rejected",
                extra={"delivery": delivery.pk, "field": error.field, "reason": error.reason},
            )
            return delivery_finish(
                delivery=delivery, outcome=DeliveryOutcome.FAILED, worker=worker, error=str(error)
            )

        order = _order_create(delivery=delivery, canonical=canonical)
        if order is None:
            return delivery_finish(
                delivery=delivery, outcome=DeliveryOutcome.DUPLICATE_ORDER, worker=worker
            )

        _order_check_hygiene(order=order)
        return delivery_finish(delivery=delivery, outcome=DeliveryOutcome.PROCESSED, worker=worker)


def _decode_json(delivery: Delivery) -> object:
    try:
        return json.loads(bytes(delivery.body))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterError("body", f"not valid JSON ({error})") from None
    except RecursionError:
        raise AdapterError("body", "JSON nested too deeply") from None


def _order_create(*, delivery: Delivery, canonical: CanonicalOrder) -> Order | None:
    """Create the order and its lines; None when the channel order already exists."""
    fields = {
        name: getattr(canonical, name)
        for name in (
            "taxes_included",
            "order_number",
            "source_name",
            "marketplace",
            "pos_register",
            "event_version",
            "currency",
            "presentment_currency",
            "customer_email",
            "customer_name",
            "shipping_address",
            "billing_address",
            "shipping_method",
            "shipping_lines",
            "placed_at",
        )
    }
    currency = canonical.currency
    for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total"):
        fields[name] = money_round(getattr(canonical, name), currency)
    fields["presentment_total"] = _presentment_total(canonical)
    try:
        with transaction.atomic():
            order = Order.objects.create(
                channel=delivery.channel,
                channel_order_id=canonical.channel_order_id,
                delivery=delivery,
                status=OrderStatus.RECEIVED,
                **fields,
            )
    except IntegrityError:
        logger.info(
            "order already exists; delivery not applied",
            extra={"delivery": delivery.pk, "channel_order_id": canonical.channel_order_id},
        )
        return None

    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            position=line.position,
            channel_line_id=line.channel_line_id,
            channel_sku=line.channel_sku,
            channel_variant_id=line.channel_variant_id,
            title=line.title,
            quantity=line.quantity,
            unit_price=money_round(line.unit_price, currency),
            sku=mapping_find_sku(channel=delivery.channel, identifiers=line.identifiers),
            raw=line.raw,
        )
        for line in canonical.lines
    )
    order_event_add(
        order=order,
        kind="order.received",
        message=f"Received from {delivery.channel} ({delivery.topic}).",
        data={"delivery": delivery.pk, "delivery_id": delivery.delivery_id},
    )
    return order


def _presentment_total(canonical: CanonicalOrder) -> Decimal | None:
    if canonical.presentment_total is None:
        return None
    if not is_currency(canonical.presentment_currency):
        return canonical.presentment_total
    return money_round(canonical.presentment_total, canonical.presentment_currency)


def _order_check_hygiene(*, order: Order) -> None:
    """Run the hygiene checks, record their flags, and hold the order or mark it ready."""
    order.status = OrderStatus.VALIDATED
    order.save(update_fields=["status", "updated_at"])
    findings = order_run_hygiene(order=order)
    holds = [finding for finding in findings if finding["severity"] == "hold"]
    flags = [finding for finding in findings if finding["severity"] == "flag"]
    order_event_add(
        order=order,
        kind="order.validated",
        message=f"Hygiene checks: {len(holds)} holds, {len(flags)} flags.",
        data={"codes": [finding["code"] for finding in findings]},
    )

    if flags:
        order_flag(order=order, flags=flags)
    if holds:
        order_hold(order=order, reasons=holds)
    else:
        order_mark_ready(order=order)
