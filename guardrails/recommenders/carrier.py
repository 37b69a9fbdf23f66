"""The built-in carrier recommender: picks the carrier service for an order's shipment.

Candidates are the active carrier services with an active rate for the order's destination
and parcel weight, in the order's currency. They must run at the ordered service level or
faster, because a slower service is a downgrade, which is its own hard-blocked action. Each
is scored 0-1 on three parts, weighted by OMSGUARD_CARRIER_WEIGHTS:

- reliability: the service's on-time rate (0.5 while unmeasured);
- sla: 1 when its transit days meet the target of the ordered service level
  (OMSGUARD_CARRIER_TARGET_TRANSIT_DAYS), falling linearly to 0 at twice the target
  (0.5 when the transit time is unknown);
- cost: the cheapest candidate's price over this one's.

The best candidate's score is the proposal's confidence. The rate lookup takes the rate
list as an argument, so a rate change can be judged against the same scoring before it is
stored (guardrails.recommenders.rates).
"""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from orders.models import CarrierRate, CarrierRateStatus, Order, ServiceLevel

from .base import Recommendation
from .registry import recommender_get

logger = logging.getLogger(__name__)

ACTION_CODE = "select_carrier"
CARRIER_MODEL_NAME = "omsguard-carrier"
CARRIER_MODEL_VERSION = "1"
# Slowest first; a candidate must be at the ordered level or to the right of it.
LEVEL_ORDER = [
    ServiceLevel.ECONOMY,
    ServiceLevel.GROUND,
    ServiceLevel.EXPEDITED,
    ServiceLevel.OVERNIGHT,
]
# NOTE: an order without a mapped carrier service is treated as a ground shipment.
DEFAULT_LEVEL = ServiceLevel.GROUND
UNKNOWN_PART_SCORE = 0.5


@dataclass(frozen=True)
class Shipment:
    """The order facts that carrier selection reads."""

    order_id: int
    country: str
    weight_grams: int | None
    service_level: str
    currency: str
    current_service: str | None


def carrier_recommend(*, order: Order) -> Recommendation:
    """Score the carrier services for the order with the configured recommender and propose."""
    return recommender_get("carrier").recommend(order=order)


def service_key(service) -> str:
    """Return the carrier/service code pair of the decision shapes, e.g. "ups/ground"."""
    return f"{service.carrier.code}/{service.code}"


def shipment_for(order: Order) -> Shipment:
    country = str((order.shipping_address or {}).get("country_code") or "").upper()
    service = order.carrier_service
    level = service.service_level if service is not None else DEFAULT_LEVEL
    if level not in LEVEL_ORDER:
        level = DEFAULT_LEVEL
    return Shipment(
        order_id=order.pk,
        country=country,
        weight_grams=_order_weight(order),
        service_level=level,
        currency=order.currency,
        current_service=service_key(service) if service is not None else None,
    )


def _order_weight(order: Order) -> int | None:
    """Total weight in grams, or None when a line's SKU has no weight (then only any-weight
    rates apply)."""
    total = 0
    for line in order.lines.all():
        if line.sku is None or line.sku.weight_grams is None:
            return None
        total += line.sku.weight_grams * line.quantity
    return total


def rates_active() -> list[CarrierRate]:
    return list(
        CarrierRate.objects.filter(status=CarrierRateStatus.ACTIVE, service__is_active=True)
        .select_related("service__carrier")
        .order_by("pk")
    )


def rate_for(service_id: int, shipment: Shipment, rates: list[CarrierRate]) -> CarrierRate | None:
    """Return the narrowest rate of the service that covers the shipment.

    The shipment's own country wins over any country, then the smallest weight limit that
    the parcel fits.
    """
    matching = [
        rate
        for rate in rates
        if rate.service_id == service_id
        and rate.currency == shipment.currency
        and rate.destination_country in ("", shipment.country)
        and _weight_fits(rate, shipment.weight_grams)
    ]
    if not matching:
        return None
    return min(
        matching,
        key=lambda rate: (
            rate.destination_country == "",
            rate.max_weight_grams is None,
            rate.max_weight_grams or 0,
        ),
    )


def _weight_fits(rate: CarrierRate, weight: int | None) -> bool:
    if rate.max_weight_grams is None:
        return True
    return weight is not None and weight <= rate.max_weight_grams


def candidates_rank(shipment: Shipment, rates: list[CarrierRate]) -> list[dict]:
    """Score every eligible service with a rate for the shipment, best first."""
    wanted = LEVEL_ORDER.index(shipment.service_level)
    services = {
        rate.service_id: rate.service
        for rate in rates
        if rate.service.service_level in LEVEL_ORDER
        and LEVEL_ORDER.index(rate.service.service_level) >= wanted
    }
    priced = []
    for service_id, service in services.items():
        rate = rate_for(service_id, shipment, rates)
        if rate is not None:
            priced.append((service, rate))
    if not priced:
        return []

    cheapest = min(rate.price for _, rate in priced)
    weights = _normalised(settings.OMSGUARD_CARRIER_WEIGHTS)
    target = settings.OMSGUARD_CARRIER_TARGET_TRANSIT_DAYS[shipment.service_level]
    ranked = []
    for service, rate in priced:
        parts = {
            "reliability": _reliability_part(service),
            "sla": _sla_part(service.transit_days, target),
            "cost": float(cheapest / rate.price) if rate.price > 0 else 1.0,
        }
        score = sum(weights[name] * parts[name] for name in weights)
        ranked.append(
            {
                "carrier_service": service_key(service),
                "name": service.name,
                "service_level": service.service_level,
                "score": round(score, 4),
                "parts": {name: round(value, 4) for name, value in parts.items()},
                "reliability": str(service.reliability)
                if service.reliability is not None
                else None,
                "transit_days": service.transit_days,
                "target_transit_days": target,
                "rate": {"id": rate.pk, "price": str(rate.price), "currency": rate.currency},
            }
        )
    ranked.sort(key=lambda candidate: (-candidate["score"], candidate["carrier_service"]))
    return ranked


def carrier_choose(shipment: Shipment, rates: list[CarrierRate]) -> str | None:
    """Return the service key the recommender would pick, or None without an eligible rate."""
    ranked = candidates_rank(shipment, rates)
    return ranked[0]["carrier_service"] if ranked else None


def _reliability_part(service) -> float:
    if service.reliability is None:
        return UNKNOWN_PART_SCORE
    return float(service.reliability)


def _sla_part(transit_days: int | None, target: int) -> float:
    if transit_days is None:
        return UNKNOWN_PART_SCORE
    if transit_days <= target:
        return 1.0
    return max(0.0, 1.0 - (transit_days - target) / target)


def _string_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


class CarrierRecommender:
    model_name = CARRIER_MODEL_NAME
    model_version = CARRIER_MODEL_VERSION

    def recommend(self, *, order: Order) -> Recommendation:
        recommendation = Recommendation(
            action_code=ACTION_CODE, model_name=self.model_name, model_version=self.model_version
        )
        if order.in_store_pickup:
            recommendation.explanation = "In-store pickup orders ship with no carrier."
            return recommendation

        shipment = shipment_for(order)
        if not shipment.country:
            recommendation.explanation = "The order has no shipping country to price."
            return recommendation

        candidates = candidates_rank(shipment, rates_active())
        recommendation.candidates = candidates
        if not candidates:
            recommendation.explanation = (
                f"No active carrier service has a {shipment.currency} rate for "
                f"{shipment.country} at the {shipment.service_level} level or faster."
            )
            return recommendation

        best = candidates[0]
        recommendation.chosen = best
        recommendation.confidence = Decimal(str(best["score"]))
        recommendation.explanation = _explain(best, shipment)
        if best["carrier_service"] == shipment.current_service:
            recommendation.explanation += " It is already the order's service; nothing proposed."
        else:
            recommendation.decision = _propose(order, shipment, best, candidates)
            recommendation.model_version = recommendation.decision.model_version

        logger.info(
            "carrier recommended",
            extra={
                "order": order.pk,
                "chosen": best["carrier_service"],
                "candidates": len(candidates),
                "decision": recommendation.decision.pk if recommendation.decision else None,
            },
        )
        return recommendation


def _explain(best: dict, shipment: Shipment) -> str:
    parts = best["parts"]
    return (
        f"{best['name']} scores {best['score']} (reliability {parts['reliability']}, SLA "
        f"{parts['sla']} for {best['transit_days']} against {best['target_transit_days']} "
        f"target day(s), cost {parts['cost']} at {best['rate']['currency']} "
        f"{best['rate']['price']}) for a {shipment.service_level} shipment to "
        f"{shipment.country}."
    )


def _propose(order: Order, shipment: Shipment, best: dict, candidates: list[dict]):
    from guardrails.rollouts import recommender_version_for
    from guardrails.services import decision_propose

    # NOTE: the version is only stamped: this recommender reads no settings from the
    # version's config yet, so a canary of a new version changes nothing it proposes.
    return decision_propose(
        order_id=order.pk,
        action_code=ACTION_CODE,
        before={"carrier_service": shipment.current_service},
        after={"carrier_service": best["carrier_service"]},
        confidence=Decimal(str(best["score"])),
        model_name=CARRIER_MODEL_NAME,
        model_version=recommender_version_for(
            order=order,
            action_code=ACTION_CODE,
            model_name=CARRIER_MODEL_NAME,
            default=CARRIER_MODEL_VERSION,
        ),
        rationale=_explain(best, shipment),
        extra_facts={
            "recommendation": {
                "recommender": CARRIER_MODEL_NAME,
                "weight_grams": shipment.weight_grams,
                "destination_country": shipment.country,
                "service_level": shipment.service_level,
                "candidates": candidates,
            }
        },
    )
