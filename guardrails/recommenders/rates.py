"""Carrier rate changes, with sign-off when a change would swap carriers on many orders.

A new rate replays the carrier recommender over the last OMSGUARD_CARRIER_RATE_SIGNOFF_DAYS
days' orders of its lane (destination country, weight limit, currency), once with the active
rates and once with the new rate in place of the lane's active one. When the chosen service
changes on more than OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE of those orders, the rate is stored
as pending sign-off and is not used. An actionable alert then requests an ops manager's
decision.
Otherwise it replaces the lane's active rate at once.

Every new rate is checked by `carrier_rate_validate` first, whatever the caller. The admin's
add form runs the same per-field validators, so bad reference data gets the same message
everywhere.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from guardrails.services import audit_record
from monitoring.models import Alert, Severity
from monitoring.services import alert_raise, alert_resolve
from omsguard.money import is_currency
from orders.address_data import is_country
from orders.models import CarrierRate, CarrierRateStatus, CarrierService, Order

from .carrier import carrier_choose, rates_active, shipment_for

logger = logging.getLogger(__name__)

ALERT_SOURCE = "carrier_rates"
ALERT_OWNER = "ops_manager"
ALERT_RUNBOOK = (
    "1. Approve or reject the pending rate in the admin: Orders > Carrier rates, filter "
    'status "Pending sign-off", select it and run "Approve pending rate" or "Reject pending '
    'rate".\n'
    "2. Before approving, check the swapped orders listed in the alert data: the new rate moves "
    "them to another carrier.\n"
    "3. If the rate was entered by mistake, reject it and enter the corrected rate."
)

# The largest weight limit a rate may have, in grams: 1,000 kg. The value is a judgment, not a
# carrier's limit: it leaves room for freight services and still rejects typing errors such as
# 99999999999999, which the column would otherwise store as a real limit.
RATE_MAX_WEIGHT_GRAMS = 1_000_000


@dataclass(frozen=True)
class RateChange:
    rate: CarrierRate
    orders_checked: int
    orders_swapped: int
    swap_share: Decimal
    needs_signoff: bool
    alert: Alert | None = None


def carrier_rate_change(
    *,
    service: CarrierService,
    price: Decimal,
    currency: str,
    user: AbstractBaseUser | None,
    destination_country: str = "",
    max_weight_grams: int | None = None,
    note: str = "",
) -> RateChange:
    """Store a new rate for a lane: active at once, or pending sign-off above the threshold.

    Raises ValidationError with a message per field (`price`, `currency`,
    `destination_country`, `max_weight_grams`) for a value `carrier_rate_validate` rejects,
    or for one the CarrierRate model rejects, such as a note over 300 characters. Nothing is
    stored then. A lower-case country code is stored in capitals.
    """
    if isinstance(destination_country, str):
        destination_country = destination_country.upper()
    carrier_rate_validate(
        price=price,
        currency=currency,
        destination_country=destination_country,
        max_weight_grams=max_weight_grams,
    )
    new_rate = CarrierRate(
        service=service,
        destination_country=destination_country,
        max_weight_grams=max_weight_grams,
        price=Decimal(price),
        currency=currency,
        note=note,
        created_by=user,
    )
    # The one-active-rate-per-lane constraint is kept by superseding, not by validation.
    new_rate.full_clean(validate_constraints=False)
    checked, swapped = _swap_impact(new_rate)
    share = Decimal(swapped) / Decimal(checked) if checked else Decimal("0")
    share = share.quantize(Decimal("0.0001"))
    threshold = Decimal(settings.OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE)
    needs_signoff = share > threshold

    with transaction.atomic():
        if needs_signoff:
            new_rate.status = CarrierRateStatus.PENDING_SIGNOFF
            new_rate.save()
        else:
            _lane_active_supersede(new_rate)
            new_rate.status = CarrierRateStatus.ACTIVE
            new_rate.approved_at = timezone.now()
            new_rate.save()
        audit_record(
            action="carrier_rate.pending_signoff" if needs_signoff else "carrier_rate.activated",
            target_type="carrier_rate",
            target_id=new_rate.pk,
            actor=user,
            system_label="" if user else "carrier rates",
            reason=note or f"Rate change swaps {swapped} of {checked} recent orders of the lane.",
            after=_rate_state(new_rate) | {"swap_share": str(share)},
        )

    alert = None
    if needs_signoff:
        alert = _signoff_alert_raise(new_rate, checked=checked, swapped=swapped, share=share)
    logger.info(
        "carrier rate changed",
        extra={
            "rate": new_rate.pk,
            "status": new_rate.status,
            "orders_checked": checked,
            "orders_swapped": swapped,
        },
    )
    return RateChange(new_rate, checked, swapped, share, needs_signoff, alert)


def carrier_rate_validate(
    *, price: object, currency: object, destination_country: object, max_weight_grams: object
) -> None:
    """Check a new rate's money and lane, raising one ValidationError that names each bad field.

    `destination_country` is checked as given, so pass it in capitals.
    """
    validators = {
        "price": validate_rate_price,
        "currency": validate_rate_currency,
        "destination_country": validate_rate_country,
        "max_weight_grams": validate_rate_weight,
    }
    values = {
        "price": price,
        "currency": currency,
        "destination_country": destination_country,
        "max_weight_grams": max_weight_grams,
    }
    errors: dict[str, list[ValidationError]] = {}
    for field, validate in validators.items():
        try:
            validate(values[field])
        except ValidationError as error:
            errors[field] = error.error_list
    if errors:
        raise ValidationError(errors)


def validate_rate_price(price: object) -> None:
    """Raise ValidationError unless `price` is a finite amount of at least 0.

    A float is rejected because binary floating point cannot hold most amounts exactly, so
    callers pass a Decimal, an int or the amount's text.
    """
    if isinstance(price, float | bool) or not isinstance(price, Decimal | int | str):
        raise ValidationError(
            f"The price must be a Decimal, an integer or a decimal string, not "
            f"{type(price).__name__} {price!r}.",
            code="invalid_price",
        )
    try:
        amount = Decimal(price)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise ValidationError(
            f"The price {price!r} is not a number; enter an amount like 9.50.",
            code="invalid_price",
        )
    if amount < 0:
        raise ValidationError(
            f"The price {price!r} is negative; enter 0 or more.", code="invalid_price"
        )


def validate_rate_currency(currency: object) -> None:
    """Raise ValidationError unless `currency` is an ISO 4217 code with a minor unit."""
    if not is_currency(currency):
        raise ValidationError(
            f"Unknown currency {currency!r}; use an ISO 4217 code like USD.",
            code="unknown_currency",
        )


def validate_rate_country(country: object) -> None:
    """Raise ValidationError unless `country` is empty (every destination) or ISO 3166-1."""
    if country == "":
        return
    if not isinstance(country, str) or not is_country(country):
        raise ValidationError(
            f"Unknown country {country!r}; use an ISO 3166-1 code like US, or leave it "
            "empty for every destination.",
            code="unknown_country",
        )


def validate_rate_weight(max_weight_grams: object) -> None:
    """Raise ValidationError unless the weight limit is None (any weight) or 1 g to 1,000 kg."""
    if max_weight_grams is None:
        return
    if isinstance(max_weight_grams, bool) or not isinstance(max_weight_grams, int):
        raise ValidationError(
            f"The weight limit must be a whole number of grams, not {max_weight_grams!r}.",
            code="invalid_weight",
        )
    if max_weight_grams < 1:
        raise ValidationError(
            "The weight limit must be at least 1 g; leave it empty for any weight.",
            code="weight_too_small",
        )
    if max_weight_grams > RATE_MAX_WEIGHT_GRAMS:
        raise ValidationError(
            f"The weight limit {max_weight_grams:,} g is more than {RATE_MAX_WEIGHT_GRAMS:,} g "
            "(1,000 kg); enter the limit in grams.",
            code="weight_too_large",
        )


def carrier_rate_approve(*, rate_id: int, user: AbstractBaseUser) -> CarrierRate:
    """Make a pending rate the lane's active rate; the previous active rate is superseded."""
    with transaction.atomic():
        rate = _pending_lock(rate_id)
        _lane_active_supersede(rate)
        rate.status = CarrierRateStatus.ACTIVE
        rate.approved_by = user
        rate.approved_at = timezone.now()
        rate.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
        audit_record(
            action="carrier_rate.approved",
            target_type="carrier_rate",
            target_id=rate.pk,
            actor=user,
            reason="Pending rate approved.",
            before={"status": CarrierRateStatus.PENDING_SIGNOFF},
            after=_rate_state(rate),
        )
    _signoff_alert_resolve_if_done(rate, user=user)
    return rate


def carrier_rate_reject(*, rate_id: int, user: AbstractBaseUser, note: str = "") -> CarrierRate:
    """Reject a pending rate; it is kept for the record and never used."""
    with transaction.atomic():
        rate = _pending_lock(rate_id)
        rate.status = CarrierRateStatus.REJECTED
        rate.approved_by = user
        rate.approved_at = timezone.now()
        rate.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
        audit_record(
            action="carrier_rate.rejected",
            target_type="carrier_rate",
            target_id=rate.pk,
            actor=user,
            reason=note or "Pending rate rejected.",
            before={"status": CarrierRateStatus.PENDING_SIGNOFF},
            after=_rate_state(rate),
        )
    _signoff_alert_resolve_if_done(rate, user=user)
    return rate


def _pending_lock(rate_id: int) -> CarrierRate:
    rate = CarrierRate.objects.select_for_update().select_related("service").get(pk=rate_id)
    if rate.status != CarrierRateStatus.PENDING_SIGNOFF:
        raise ValueError(
            f"Carrier rate {rate.pk} is {rate.status}; only a pending rate can be approved "
            "or rejected."
        )
    return rate


def _lane_active_supersede(rate: CarrierRate) -> None:
    CarrierRate.objects.select_for_update().filter(
        _lane_filter(rate), status=CarrierRateStatus.ACTIVE
    ).update(status=CarrierRateStatus.SUPERSEDED, updated_at=timezone.now())


def _lane_filter(rate: CarrierRate) -> Q:
    weight = (
        Q(max_weight_grams__isnull=True)
        if rate.max_weight_grams is None
        else Q(max_weight_grams=rate.max_weight_grams)
    )
    return Q(service_id=rate.service_id, destination_country=rate.destination_country) & weight


def _swap_impact(new_rate: CarrierRate) -> tuple[int, int]:
    """Return (orders checked, orders whose recommended service the new rate changes)."""
    current = rates_active()
    replaced = [rate for rate in current if not _same_lane(rate, new_rate)]
    new_rate.service = CarrierService.objects.select_related("carrier").get(pk=new_rate.service_id)
    proposed = [*replaced, new_rate]

    checked = swapped = 0
    for order in _lane_orders(new_rate):
        shipment = shipment_for(order)
        if new_rate.max_weight_grams is not None and (
            shipment.weight_grams is None or shipment.weight_grams > new_rate.max_weight_grams
        ):
            continue
        checked += 1
        if carrier_choose(shipment, current) != carrier_choose(shipment, proposed):
            swapped += 1
    return checked, swapped


def _same_lane(rate: CarrierRate, other: CarrierRate) -> bool:
    return (
        rate.service_id == other.service_id
        and rate.destination_country == other.destination_country
        and rate.max_weight_grams == other.max_weight_grams
    )


def _lane_orders(rate: CarrierRate):
    """Recent shipped-to-address orders in the rate's currency and country.

    NOTE: every order of the window is scored in Python; a lane with tens of thousands of
    orders a week makes the change slow enough to move into a background task.
    """
    since = timezone.now() - timedelta(days=settings.OMSGUARD_CARRIER_RATE_SIGNOFF_DAYS)
    orders = Order.objects.filter(
        created_at__gte=since, in_store_pickup=False, currency=rate.currency
    )
    if rate.destination_country:
        orders = orders.filter(shipping_address__country_code=rate.destination_country)
    return (
        orders.select_related("carrier_service__carrier")
        .prefetch_related("lines__sku")
        .order_by("pk")
        .iterator(chunk_size=500)
    )


def _lane_key(rate: CarrierRate) -> str:
    weight = rate.max_weight_grams if rate.max_weight_grams is not None else "any"
    return f"carrier_rate_signoff:{rate.service_id}:{rate.destination_country or 'any'}:{weight}"


def _signoff_alert_raise(rate: CarrierRate, *, checked: int, swapped: int, share: Decimal) -> Alert:
    return alert_raise(
        severity=Severity.ACTIONABLE,
        source=ALERT_SOURCE,
        dedup_key=_lane_key(rate),
        title=f"Carrier rate for {rate.service} needs sign-off",
        detail=(
            f"The new rate {rate.currency} {rate.price} would swap the recommended carrier on "
            f"{swapped} of {checked} orders of the last "
            f"{settings.OMSGUARD_CARRIER_RATE_SIGNOFF_DAYS} days ({share:.1%}), above the "
            f"{Decimal(settings.OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE):.0%} threshold. It is not "
            "used until approved."
        ),
        data={
            "rate": rate.pk,
            "service": rate.service_id,
            "orders_checked": checked,
            "orders_swapped": swapped,
            "swap_share": str(share),
        },
        owner_group=ALERT_OWNER,
        runbook=ALERT_RUNBOOK,
    )


def _signoff_alert_resolve_if_done(rate: CarrierRate, *, user: AbstractBaseUser) -> None:
    pending = CarrierRate.objects.filter(
        _lane_filter(rate), status=CarrierRateStatus.PENDING_SIGNOFF
    )
    if not pending.exists():
        alert_resolve(
            dedup_key=_lane_key(rate),
            resolution=f"Rate {rate.pk} {rate.status} by {user.get_username()}.",
            user=user,
        )


def _rate_state(rate: CarrierRate) -> dict:
    return {
        "service": rate.service_id,
        "destination_country": rate.destination_country,
        "max_weight_grams": rate.max_weight_grams,
        "price": str(rate.price),
        "currency": rate.currency,
        "status": rate.status,
    }
