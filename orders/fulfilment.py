"""Writes for what happens to an order after OMS Guard lets it go: shipments and their delivery
status, pick/pack/ship exceptions, customer returns and chargebacks.

The fulfilment KPIs count these facts. Shipments, returns and chargebacks carry the sender's
own id, unique per order: sending the same id with the same content again returns the stored
record, and the same id with other content is a conflict. Each new record adds an order
timeline event and an audit entry.
"""

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Channel, Sku
from guardrails.services import audit_record
from omsguard.money import is_currency, minor_units, money_format

from .carriers import carrier_mapping_find, order_destination_country
from .models import (
    FULFILMENT_RETURN_REASONS,
    CarrierService,
    Chargeback,
    FulfilmentException,
    FulfilmentExceptionReason,
    FulfilmentStage,
    Order,
    OrderEvent,
    OrderReturn,
    OrderStatus,
    ReturnAttribution,
    ReturnReason,
    Shipment,
    ShipmentStatus,
)
from .services import order_event_add, order_lock

logger = logging.getLogger(__name__)

# How far a reported time may lie ahead of this server's clock.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Reports older than this are refused: they are almost always a wrong date (0001-01-01, a
# swapped year), and one of them would move the dashboard's default baseline to that day.
MAX_REPORT_AGE = timedelta(days=400)
# Largest chargeback amount the column holds: 14 digits, 3 of them after the point.
MAX_AMOUNT = Decimal("99999999999.999")
# The audit log's actor when no user is given, e.g. a command or a test.
SYSTEM_LABEL = "fulfilment report"

# Timeline events that change the shipping address: a reviewer's correction, and an AI
# decision or a customer's confirmed correction applied through order_address_set.
ADDRESS_CHANGE_EVENTS = ("order.address_corrected", "order.shipping_address_changed")
SUBSTITUTION_EVENT = "order.sku_substituted"

# A parcel shipped for an order in one of these is recorded all the same, with a note.
UNSHIPPABLE_STATUSES = frozenset({OrderStatus.ON_HOLD, OrderStatus.CANCELLED})
FINAL_SHIPMENT_STATUSES = frozenset({ShipmentStatus.DELIVERED, ShipmentStatus.RETURNED_TO_SENDER})
SHIPMENT_TRANSITIONS = {
    ShipmentStatus.SHIPPED: {
        ShipmentStatus.DELIVERED,
        ShipmentStatus.DELIVERY_FAILED,
        ShipmentStatus.RETURNED_TO_SENDER,
    },
    # A failed attempt may still end delivered, after a second attempt, or go back.
    ShipmentStatus.DELIVERY_FAILED: {ShipmentStatus.DELIVERED, ShipmentStatus.RETURNED_TO_SENDER},
    ShipmentStatus.DELIVERED: set(),
    ShipmentStatus.RETURNED_TO_SENDER: set(),
}


class FulfilmentErrorCode(StrEnum):
    INVALID = "invalid"
    UNKNOWN_ORDER = "unknown_order"
    UNKNOWN_SKU = "unknown_sku"
    UNKNOWN_SHIPMENT = "unknown_shipment"
    INVALID_CHOICE = "invalid_choice"
    NAIVE_DATETIME = "naive_datetime"
    IN_FUTURE = "in_future"
    TOO_OLD = "too_old"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CURRENCY = "invalid_currency"
    ID_REUSED = "id_reused"
    STATUS_FINAL = "status_final"


class FulfilmentError(Exception):
    """Input that cannot be recorded. `field` names the input at fault; `status` is the HTTP
    status it maps to."""

    status = 400

    def __init__(self, code: FulfilmentErrorCode, message: str, field: str = "") -> None:
        self.code = code
        self.message = message
        self.field = field
        super().__init__(message)


class FulfilmentConflict(FulfilmentError):
    """The record exists with other content, or the change contradicts its current state."""

    status = 409


# --- Finding the order ---------------------------------------------------------------------


def fulfilment_order_find(
    *, order_id: int | None = None, channel_code: str = "", channel_order_id: str = ""
) -> Order:
    """Find the order by OMS Guard id, or by channel code and the channel's order id."""
    if order_id is not None:
        order = Order.objects.select_related("channel").filter(pk=order_id).first()
        if order is None:
            raise FulfilmentError(
                FulfilmentErrorCode.UNKNOWN_ORDER, f"No order with id {order_id}.", "order"
            )
        return order

    channel = Channel.objects.filter(code=channel_code).first()
    if channel is None:
        raise FulfilmentError(
            FulfilmentErrorCode.UNKNOWN_ORDER, f"No channel with code {channel_code!r}.", "channel"
        )
    order = (
        Order.objects.select_related("channel")
        .filter(channel=channel, channel_order_id=channel_order_id)
        .first()
    )
    if order is None:
        raise FulfilmentError(
            FulfilmentErrorCode.UNKNOWN_ORDER,
            f"Channel {channel.code} has no order {channel_order_id!r}.",
            "channel_order_id",
        )
    return order


# --- Shipments -----------------------------------------------------------------------------


def shipment_record(
    *,
    order: Order,
    shipment_id: str,
    user: AbstractBaseUser | None,
    lines: list[dict] | None = None,
    carrier_code: str = "",
    tracking_number: str = "",
    shipped_at: datetime | None = None,
    exceptions: list[dict] | None = None,
) -> tuple[Shipment, bool]:
    """Record a parcel shipped for the order; return the shipment and whether it is new.

    `lines` are [{"sku": canonical SKU code, "quantity": n}] and may be left out.
    `exceptions` are [{"stage", "reason", "note", "occurred_at"}] found while it was
    picked, packed or shipped. `shipped_at` defaults to now. Raises FulfilmentError for bad
    input and FulfilmentConflict when the shipment id exists with other content.
    """
    now = timezone.now()
    shipped_at_given = shipped_at is not None
    shipped_at = _checked_time(shipped_at, field="shipped_at", now=now)
    lines = _checked_lines(lines or [], field="lines")
    exceptions = [
        _checked_exception(item, field=f"exceptions[{index}]", default_time=shipped_at, now=now)
        for index, item in enumerate(exceptions or [])
    ]

    with transaction.atomic():
        # The order lock serialises shipments of one order, so each one reads those before it.
        order = order_lock(order_id=order.pk)
        existing = Shipment.objects.filter(order=order, shipment_id=shipment_id).first()
        if existing is not None:
            _check_same_shipment(
                existing,
                lines=lines,
                carrier_code=carrier_code,
                tracking_number=tracking_number,
                shipped_at=shipped_at if shipped_at_given else None,
                exceptions=exceptions,
            )
            return existing, False

        duplicate_of = _shipment_repeated(
            order, lines, carrier_code=carrier_code, tracking_number=tracking_number
        )
        shipment = Shipment.objects.create(
            order=order,
            channel=order.channel,
            shipment_id=shipment_id,
            carrier_code=carrier_code,
            carrier_service=_carrier_service_find(order, carrier_code),
            tracking_number=tracking_number,
            lines=lines,
            shipped_at=shipped_at,
            is_duplicate=duplicate_of is not None,
            duplicate_of=duplicate_of,
            address_corrected=_address_corrected_before(order, shipped_at),
            created_by=user,
        )
        _shipment_log(shipment, user=user)
        for item in exceptions:
            _exception_create(order=order, shipment=shipment, user=user, **item)

    if order.status in UNSHIPPABLE_STATUSES:
        logger.warning(
            "shipment recorded for an order that may not ship",
            extra={"order": order.pk, "shipment": shipment.pk, "order_status": order.status},
        )
    logger.info(
        "shipment recorded",
        extra={
            "order": order.pk,
            "shipment": shipment.pk,
            "duplicate_of": shipment.duplicate_of_id,
            "exceptions": len(exceptions),
        },
    )
    return shipment, True


def shipment_status_set(
    *,
    shipment: Shipment,
    status: str,
    user: AbstractBaseUser | None,
    changed_at: datetime | None = None,
) -> tuple[Shipment, bool]:
    """Move a shipment to delivered, delivery_failed or returned_to_sender.

    Returns the shipment and whether its status changed; setting the current status again
    changes nothing. Delivered and returned_to_sender are final: leaving them raises
    FulfilmentConflict. `changed_at` defaults to now.
    """
    if status not in ShipmentStatus.values:
        raise _invalid_choice("status", status, ShipmentStatus.values)
    now = timezone.now()
    changed_at = _checked_time(changed_at, field="status_changed_at", now=now)

    with transaction.atomic():
        shipment = Shipment.objects.select_for_update().select_related("order").get(pk=shipment.pk)
        if shipment.status == status:
            return shipment, False
        if status not in SHIPMENT_TRANSITIONS[shipment.status]:
            raise _status_conflict(shipment, status)
        if changed_at < shipment.shipped_at:
            raise FulfilmentError(
                FulfilmentErrorCode.INVALID,
                f"status_changed_at ({changed_at.isoformat()}) is before the shipment was "
                f"shipped ({shipment.shipped_at.isoformat()}).",
                "status_changed_at",
            )
        before = {"status": shipment.status, "status_changed_at": _iso(shipment.status_changed_at)}
        shipment.status = status
        shipment.status_changed_at = changed_at
        shipment.save(update_fields=["status", "status_changed_at"])

        after = {"status": status, "status_changed_at": _iso(changed_at)}
        order_event_add(
            order=shipment.order,
            kind="shipment.status_changed",
            message=f"Shipment {shipment.shipment_id}: {shipment.get_status_display().lower()}.",
            actor=user,
            data={"shipment": shipment.pk, **after},
        )
        _audit(user, "shipment.status_changed", "shipment", shipment.pk, before, after)

    logger.info(
        "shipment status changed",
        extra={"order": shipment.order_id, "shipment": shipment.pk, "status": status},
    )
    return shipment, True


def _status_conflict(shipment: Shipment, status: str) -> FulfilmentConflict:
    if shipment.status in FINAL_SHIPMENT_STATUSES:
        message = (
            f"Shipment {shipment.shipment_id} is {shipment.status}, a final status; it cannot "
            f"become {status}."
        )
    else:
        message = f"Shipment {shipment.shipment_id} cannot go from {shipment.status} to {status}."
    return FulfilmentConflict(FulfilmentErrorCode.STATUS_FINAL, message, "status")


def _carrier_service_find(order: Order, carrier_code: str) -> CarrierService | None:
    """Resolve the code as the order's channel would send it, else as "carrier/service"."""
    if not carrier_code:
        return None
    mapping = carrier_mapping_find(
        channel=order.channel,
        code=carrier_code,
        destination_country=order_destination_country(order),
    )
    if mapping is not None:
        return mapping.service
    carrier, _, service = carrier_code.partition("/")
    if not service:
        return None
    return CarrierService.objects.filter(carrier__code=carrier, code=service).first()


def _shipment_repeated(
    order: Order, lines: list[dict], *, carrier_code: str, tracking_number: str
) -> Shipment | None:
    """Return the earlier shipment this one repeats, or None when it ships something new.

    A shipment repeats the order's earlier (non-duplicate) shipments when, for every one of
    its SKUs, those shipped some of it already and the quantity shipped so far plus this
    one is more than the order asked for. An earlier shipment without lines adds no
    quantities, because what it held is unknown. A shipment without lines is judged by its
    tracking number instead (see _same_parcel_find).
    """
    if not lines:
        return _same_parcel_find(order, carrier_code=carrier_code, tracking_number=tracking_number)
    earlier = list(order.shipments.filter(is_duplicate=False).order_by("pk"))
    if not earlier:
        return None

    ordered = _ordered_quantities(order)
    shipped: Counter[str] = Counter()
    first_with: dict[str, Shipment] = {}
    for shipment in earlier:
        for line in shipment.lines:
            shipped[line["sku"]] += line["quantity"]
            first_with.setdefault(line["sku"], shipment)

    quantities = _quantities(lines)
    for sku, quantity in quantities.items():
        if shipped[sku] == 0 or shipped[sku] + quantity <= ordered[sku]:
            return None
    return min((first_with[sku] for sku in quantities), key=lambda shipment: shipment.pk)


def _same_parcel_find(order: Order, *, carrier_code: str, tracking_number: str) -> Shipment | None:
    """Return the order's earliest shipment with the same tracking number, or None.

    Used for a shipment without lines, whose content is unknown. A second parcel of the
    same order (a two-box order) has its own tracking number, so only a repeated tracking
    number marks a duplicate. The carrier codes must match too when both shipments name
    one. Without a tracking number nothing can be compared, so the shipment is not a
    duplicate. A match that is itself a duplicate gives the shipment it repeats.
    """
    tracking_number = tracking_number.strip()
    if not tracking_number:
        return None
    same_tracking = order.shipments.filter(tracking_number__iexact=tracking_number)
    carrier_code = carrier_code.strip()
    if carrier_code:
        same_tracking = same_tracking.filter(
            Q(carrier_code__iexact=carrier_code) | Q(carrier_code="")
        )
    match = same_tracking.select_related("duplicate_of").order_by("pk").first()
    if match is None:
        return None
    return match.duplicate_of or match


def _ordered_quantities(order: Order) -> Counter[str]:
    ordered: Counter[str] = Counter()
    for code, quantity in order.lines.filter(sku__isnull=False).values_list(
        "sku__code", "quantity"
    ):
        ordered[code] += quantity
    return ordered


def _address_corrected_before(order: Order, moment: datetime) -> bool:
    return OrderEvent.objects.filter(
        order=order, kind__in=ADDRESS_CHANGE_EVENTS, created_at__lt=moment
    ).exists()


def _check_same_shipment(
    shipment: Shipment,
    *,
    lines: list[dict],
    carrier_code: str,
    tracking_number: str,
    shipped_at: datetime | None,
    exceptions: list[dict],
) -> None:
    differing = []
    if _quantities(shipment.lines) != _quantities(lines):
        differing.append("lines")
    if shipment.carrier_code != carrier_code:
        differing.append("carrier_code")
    if shipment.tracking_number != tracking_number:
        differing.append("tracking_number")
    if shipped_at is not None and shipment.shipped_at != shipped_at:
        differing.append("shipped_at")
    # Exceptions reported later for the same shipment are fine; a retry must not bring new ones.
    recorded = Counter(shipment.exceptions.values_list("stage", "reason", "note"))
    sent = Counter((item["stage"], item["reason"], item["note"]) for item in exceptions)
    if sent - recorded:
        differing.append("exceptions")
    if differing:
        raise _id_reused("shipment", shipment.shipment_id, shipment.order_id, differing)


def _shipment_log(shipment: Shipment, *, user: AbstractBaseUser | None) -> None:
    notes = []
    if shipment.is_duplicate:
        notes.append(f"repeats shipment {shipment.duplicate_of.shipment_id}")
    if shipment.address_corrected:
        notes.append("address corrected before shipping")
    if shipment.order.status in UNSHIPPABLE_STATUSES:
        notes.append(f"the order is {shipment.order.get_status_display().lower()}")
    carrier = str(shipment.carrier_service or shipment.carrier_code or "no carrier given")
    message = f"Shipment {shipment.shipment_id} shipped with {carrier}"
    summary = _shipment_summary(shipment)
    order_event_add(
        order=shipment.order,
        kind="shipment.recorded",
        message=message + (f" ({'; '.join(notes)})." if notes else "."),
        actor=user,
        data={"shipment": shipment.pk, **summary},
    )
    _audit(user, "shipment.recorded", "shipment", shipment.pk, None, summary)


def _shipment_summary(shipment: Shipment) -> dict:
    return {
        "shipment_id": shipment.shipment_id,
        "carrier_code": shipment.carrier_code,
        "carrier_service": shipment.carrier_service_id,
        "lines": shipment.lines,
        "shipped_at": _iso(shipment.shipped_at),
        "is_duplicate": shipment.is_duplicate,
        "duplicate_of": shipment.duplicate_of_id,
        "address_corrected": shipment.address_corrected,
    }


# --- Fulfilment exceptions -----------------------------------------------------------------


def fulfilment_exception_record(
    *,
    order: Order,
    stage: str,
    reason: str,
    user: AbstractBaseUser | None,
    note: str = "",
    shipment_id: str = "",
    occurred_at: datetime | None = None,
) -> tuple[FulfilmentException, bool]:
    """Record a pick, pack or ship mistake; return it and whether it is new.

    Exceptions carry no id of their own. When the sender gives `occurred_at`, a report equal
    in every field to a stored one is taken as a retry and returns the stored one. Without
    `occurred_at` (it defaults to now) every report is recorded, so a client that retries
    should send it, or an Idempotency-Key header through the API.
    """
    now = timezone.now()
    occurred_at_given = occurred_at is not None
    item = _checked_exception(
        {"stage": stage, "reason": reason, "note": note, "occurred_at": occurred_at},
        field="",
        default_time=now,
        now=now,
    )

    with transaction.atomic():
        order = order_lock(order_id=order.pk)
        shipment = None
        if shipment_id:
            shipment = order.shipments.filter(shipment_id=shipment_id).first()
            if shipment is None:
                raise FulfilmentError(
                    FulfilmentErrorCode.UNKNOWN_SHIPMENT,
                    f"Order {order.pk} has no shipment {shipment_id!r}; record the shipment "
                    "first or leave shipment_id out.",
                    "shipment_id",
                )
        if occurred_at_given:
            existing = FulfilmentException.objects.filter(order=order, shipment=shipment, **item)
            if (found := existing.first()) is not None:
                return found, False
        exception = _exception_create(order=order, shipment=shipment, user=user, **item)

    logger.info(
        "fulfilment exception recorded",
        extra={"order": order.pk, "exception": exception.pk, "stage": exception.stage},
    )
    return exception, True


def _exception_create(
    *,
    order: Order,
    shipment: Shipment | None,
    user: AbstractBaseUser | None,
    stage: str,
    reason: str,
    note: str,
    occurred_at: datetime,
) -> FulfilmentException:
    exception = FulfilmentException.objects.create(
        order=order,
        channel=order.channel,
        shipment=shipment,
        stage=stage,
        reason=reason,
        note=note,
        occurred_at=occurred_at,
        created_by=user,
    )
    summary = {
        "stage": stage,
        "reason": reason,
        "shipment": shipment.pk if shipment else None,
        "occurred_at": _iso(occurred_at),
    }
    where = f" (shipment {shipment.shipment_id})" if shipment else ""
    order_event_add(
        order=order,
        kind="fulfilment_exception.recorded",
        message=(
            f"{exception.get_stage_display()} exception{where}: "
            f"{exception.get_reason_display().lower()}."
        ),
        actor=user,
        data={"fulfilment_exception": exception.pk, **summary},
    )
    _audit(
        user, "fulfilment_exception.recorded", "fulfilment_exception", exception.pk, None, summary
    )
    return exception


def _checked_exception(item: dict, *, field: str, default_time: datetime, now: datetime) -> dict:
    prefix = f"{field}." if field else ""
    stage, reason, note = item.get("stage"), item.get("reason"), item.get("note") or ""
    if stage not in FulfilmentStage.values:
        raise _invalid_choice(f"{prefix}stage", stage, FulfilmentStage.values)
    if reason not in FulfilmentExceptionReason.values:
        raise _invalid_choice(f"{prefix}reason", reason, FulfilmentExceptionReason.values)
    occurred_at = item.get("occurred_at") or default_time
    occurred_at = _checked_time(occurred_at, field=f"{prefix}occurred_at", now=now)
    return {"stage": stage, "reason": reason, "note": note, "occurred_at": occurred_at}


# --- Returns -------------------------------------------------------------------------------


def return_attribution(reason: str, *, involves_substitution: bool) -> ReturnAttribution:
    """Decide whom a return counts against, from its reason code.

    1. Reasons that mean the warehouse or carrier got the order wrong (wrong item, wrong
       quantity, damaged in transit, late delivery) count against fulfilment, substituted
       or not.
    2. An unwanted substitute counts against the substitution, and so does any other
       return of a substituted SKU, except a defective one: the substitute itself was
       the problem.
    3. A defective or not-as-described product counts against the product.
    4. Everything else (size or fit, changed mind, other) counts against the customer.
    """
    if reason in FULFILMENT_RETURN_REASONS:
        return ReturnAttribution.FULFILMENT
    if reason == ReturnReason.SUBSTITUTE_UNWANTED:
        return ReturnAttribution.SUBSTITUTION
    if involves_substitution and reason != ReturnReason.DEFECTIVE:
        return ReturnAttribution.SUBSTITUTION
    if reason in (ReturnReason.DEFECTIVE, ReturnReason.NOT_AS_DESCRIBED):
        return ReturnAttribution.PRODUCT
    return ReturnAttribution.CUSTOMER


def return_record(
    *,
    order: Order,
    return_id: str,
    reason: str,
    user: AbstractBaseUser | None,
    lines: list[dict] | None = None,
    note: str = "",
    received_at: datetime | None = None,
) -> tuple[OrderReturn, bool]:
    """Record a customer return with its reason code; return it and whether it is new.

    Returned SKUs need not be on the order: a customer sends back the wrong item they got.
    `received_at` defaults to now. Raises FulfilmentError for bad input and
    FulfilmentConflict when the return id exists with other content.
    """
    if reason not in ReturnReason.values:
        raise _invalid_choice("reason", reason, ReturnReason.values)
    now = timezone.now()
    received_at_given = received_at is not None
    received_at = _checked_time(received_at, field="received_at", now=now)
    lines = _checked_lines(lines or [], field="lines")

    with transaction.atomic():
        order = order_lock(order_id=order.pk)
        existing = OrderReturn.objects.filter(order=order, return_id=return_id).first()
        if existing is not None:
            differing = [
                name
                for name, same in (
                    ("reason", existing.reason == reason),
                    ("lines", _quantities(existing.lines) == _quantities(lines)),
                    ("note", existing.note == note),
                    ("received_at", not received_at_given or existing.received_at == received_at),
                )
                if not same
            ]
            if differing:
                raise _id_reused("return", return_id, order.pk, differing)
            return existing, False

        involves_substitution = _return_involves_substitution(order, lines)
        order_return = OrderReturn.objects.create(
            order=order,
            channel=order.channel,
            return_id=return_id,
            reason=reason,
            attributed_to=return_attribution(reason, involves_substitution=involves_substitution),
            involves_substitution=involves_substitution,
            lines=lines,
            note=note,
            received_at=received_at,
            created_by=user,
        )
        _return_log(order_return, user=user)

    logger.info(
        "return recorded",
        extra={
            "order": order.pk,
            "return": order_return.pk,
            "reason": reason,
            "attributed_to": order_return.attributed_to,
        },
    )
    return order_return, True


def _return_involves_substitution(order: Order, lines: list[dict]) -> bool:
    """Return whether a returned SKU replaced the SKU ordered on one of the order's lines.

    A return without lines stands for the whole order, so it involves a substitution when
    any line of the order carries a substitute.
    """
    substitutes = order_substitute_skus(order)
    if not lines:
        return bool(substitutes)
    return any(line["sku"] in substitutes for line in lines)


def order_substitute_skus(order: Order) -> set[str]:
    """Return the SKU codes the order's lines now carry in place of the ordered ones.

    Substitutions are read from the order.sku_substituted timeline events, which
    orders.services.order_line_sku_substitute writes with the line's SKU before and after.
    A line switched back to its first SKU, e.g. by a revert, carries no substitute.
    """
    first: dict[object, str | None] = {}
    last: dict[object, str | None] = {}
    events = OrderEvent.objects.filter(order=order, kind=SUBSTITUTION_EVENT).order_by(
        "created_at", "pk"
    )
    for data in events.values_list("data", flat=True):
        line = data.get("line")
        first.setdefault(line, data.get("before"))
        last[line] = data.get("after")
    return {sku for line, sku in last.items() if sku and sku != first[line]}


def _return_log(order_return: OrderReturn, *, user: AbstractBaseUser | None) -> None:
    summary = {
        "return_id": order_return.return_id,
        "reason": order_return.reason,
        "attributed_to": order_return.attributed_to,
        "involves_substitution": order_return.involves_substitution,
        "lines": order_return.lines,
        "received_at": _iso(order_return.received_at),
    }
    order_event_add(
        order=order_return.order,
        kind="return.recorded",
        message=(
            f"Return {order_return.return_id}: {order_return.get_reason_display().lower()} "
            f"(counts against {order_return.get_attributed_to_display().lower()})."
        ),
        actor=user,
        data={"return": order_return.pk, **summary},
    )
    _audit(user, "return.recorded", "order_return", order_return.pk, None, summary)


# --- Chargebacks ---------------------------------------------------------------------------


def chargeback_record(
    *,
    order: Order,
    chargeback_id: str,
    amount: Decimal,
    currency: str,
    user: AbstractBaseUser | None,
    reason: str = "",
    received_at: datetime | None = None,
) -> tuple[Chargeback, bool]:
    """Record a payment dispute with its amount; return it and whether it is new.

    The amount must be positive and use no more decimal places than its ISO 4217 currency
    has (2 for USD, 0 for JPY). It may differ from the order's currency, as a marketplace
    may dispute in its settlement currency. `received_at` defaults to now. Raises
    FulfilmentError for bad input and FulfilmentConflict when the id exists with other
    content.
    """
    _check_amount(amount, currency)
    now = timezone.now()
    received_at_given = received_at is not None
    received_at = _checked_time(received_at, field="received_at", now=now)

    with transaction.atomic():
        order = order_lock(order_id=order.pk)
        existing = Chargeback.objects.filter(order=order, chargeback_id=chargeback_id).first()
        if existing is not None:
            differing = [
                name
                for name, same in (
                    ("amount", existing.amount == amount),
                    ("currency", existing.currency == currency),
                    ("reason", existing.reason == reason),
                    ("received_at", not received_at_given or existing.received_at == received_at),
                )
                if not same
            ]
            if differing:
                raise _id_reused("chargeback", chargeback_id, order.pk, differing)
            return existing, False

        chargeback = Chargeback.objects.create(
            order=order,
            channel=order.channel,
            chargeback_id=chargeback_id,
            amount=amount,
            currency=currency,
            reason=reason,
            received_at=received_at,
            created_by=user,
        )
        summary = {
            "chargeback_id": chargeback_id,
            "amount": money_format(amount, currency),
            "currency": currency,
            "reason": reason,
            "received_at": _iso(received_at),
        }
        order_event_add(
            order=order,
            kind="chargeback.recorded",
            message=f"Chargeback {chargeback_id}: {currency} {summary['amount']}.",
            actor=user,
            data={"chargeback": chargeback.pk, **summary},
        )
        _audit(user, "chargeback.recorded", "chargeback", chargeback.pk, None, summary)

    logger.info("chargeback recorded", extra={"order": order.pk, "chargeback": chargeback.pk})
    return chargeback, True


def _check_amount(amount: Decimal, currency: str) -> None:
    if not is_currency(currency):
        raise FulfilmentError(
            FulfilmentErrorCode.INVALID_CURRENCY,
            f"{currency!r} is not an ISO 4217 currency code; use one such as USD or EUR.",
            "currency",
        )
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise FulfilmentError(
            FulfilmentErrorCode.INVALID_AMOUNT, "The amount must be a decimal number.", "amount"
        )
    if amount <= 0:
        raise FulfilmentError(
            FulfilmentErrorCode.INVALID_AMOUNT, "The amount must be greater than 0.", "amount"
        )
    if amount > MAX_AMOUNT:
        raise FulfilmentError(
            FulfilmentErrorCode.INVALID_AMOUNT,
            f"The amount must be at most {MAX_AMOUNT}.",
            "amount",
        )
    digits = minor_units(currency)
    if -amount.normalize().as_tuple().exponent > digits:
        raise FulfilmentError(
            FulfilmentErrorCode.INVALID_AMOUNT,
            # Normalized: DRF pads "100.5" to the field's 3 places, which the client never sent.
            f"{currency} amounts have at most {digits} decimal places; got {amount.normalize():f}.",
            "amount",
        )


# --- Shared checks -------------------------------------------------------------------------


def _checked_time(value: datetime | None, *, field: str, now: datetime) -> datetime:
    """Return the reported time, or now when none was given; it must be aware and not ahead."""
    if value is None:
        return now
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise FulfilmentError(
            FulfilmentErrorCode.NAIVE_DATETIME,
            f"{field} needs a timezone, e.g. 2024-11-04T15:20:00Z.",
            field,
        )
    if value > now + MAX_CLOCK_SKEW:
        raise FulfilmentError(
            FulfilmentErrorCode.IN_FUTURE,
            f"{field} ({value.isoformat()}) is in the future; this server's time is "
            f"{now.isoformat()}.",
            field,
        )
    if value < now - MAX_REPORT_AGE:
        raise FulfilmentError(
            FulfilmentErrorCode.TOO_OLD,
            f"{field} ({value.isoformat()}) is more than {MAX_REPORT_AGE.days} days ago; "
            "check the date.",
            field,
        )
    return value


def _checked_lines(lines: Iterable[dict], *, field: str) -> list[dict]:
    """Return the lines as [{"sku", "quantity"}]; every SKU code must be a canonical SKU."""
    checked = []
    for index, line in enumerate(lines):
        sku, quantity = line.get("sku"), line.get("quantity")
        if not isinstance(sku, str) or not sku:
            raise FulfilmentError(
                FulfilmentErrorCode.INVALID, "A SKU code is required.", f"{field}[{index}].sku"
            )
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise FulfilmentError(
                FulfilmentErrorCode.INVALID,
                "The quantity must be a whole number of at least 1.",
                f"{field}[{index}].quantity",
            )
        checked.append({"sku": sku, "quantity": quantity})

    known = set(
        Sku.objects.filter(code__in={line["sku"] for line in checked}).values_list(
            "code", flat=True
        )
    )
    for index, line in enumerate(checked):
        if line["sku"] not in known:
            raise FulfilmentError(
                FulfilmentErrorCode.UNKNOWN_SKU,
                f"Line {index + 1}: no SKU with code {line['sku']!r}; use the canonical SKU code.",
                f"{field}[{index}].sku",
            )
    return checked


def _quantities(lines: Iterable[dict]) -> Counter[str]:
    quantities: Counter[str] = Counter()
    for line in lines:
        quantities[line["sku"]] += line["quantity"]
    return quantities


def _invalid_choice(field: str, value: object, choices: list[str]) -> FulfilmentError:
    return FulfilmentError(
        FulfilmentErrorCode.INVALID_CHOICE,
        f"{value!r} is not a valid {field.rsplit('.', 1)[-1]}; use one of: {', '.join(choices)}.",
        field,
    )


def _id_reused(
    kind: str, record_id: str, order_id: int, differing: list[str]
) -> FulfilmentConflict:
    return FulfilmentConflict(
        FulfilmentErrorCode.ID_REUSED,
        f"The {kind} {record_id!r} of order {order_id} was already recorded with a different "
        f"{', '.join(differing)}. Send the same content to repeat it, or a new id for a new "
        f"{kind}.",
        f"{kind}_id",
    )


def _audit(
    user: AbstractBaseUser | None,
    action: str,
    target_type: str,
    target_id: int,
    before: dict | None,
    after: dict,
) -> None:
    audit_record(
        action=action,
        target_type=target_type,
        target_id=target_id,
        actor=user,
        system_label="" if user else SYSTEM_LABEL,
        before=before,
        after=after,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
