"""The built-in substitution recommender for a line that is short at pick time.

Candidates are the active SKUs in the ordered SKU's currency, other than the ordered SKU.
Each gets a similarity (0-1) from four parts, weighted by OMSGUARD_SUBSTITUTION_WEIGHTS:

- title: rapidfuzz WRatio of the normalised titles, over 100;
- attributes: Jaccard overlap of the variant attribute pairs (0.5 when neither has any);
- category: 1 for the same non-empty category, else 0;
- price: 1 when the price is within OMSGUARD_SUBSTITUTION_PRICE_BAND of the ordered price.

The ranking score adds the margin change (the customer keeps paying the ordered price, so
the margin changes by ordered cost minus substitute cost) with a small weight, so margin
breaks ties between equally similar candidates. Candidates with stock for the short quantity
rank before those that only have a replenishment ETA; candidates with neither, and those a
NOT_A_SUBSTITUTE listing constraint names, are left out. Only a candidate with stock is
proposed, through decision_propose. A NO_SUBSTITUTION constraint on the ordered SKU still
gets the best candidate proposed, so the guardrails record a blocked decision for the audit.
"""

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from rapidfuzz import fuzz

from catalog.models import ListingConstraint, ListingConstraintKind, Sku
from catalog.normalize import normalize_attribute_key, normalize_title
from catalog.selectors import listing_forbids
from inventory.selectors import replenishment_eta, stock_availability
from orders.models import OrderLine

from .base import Recommendation, RecommendationError
from .calibration import (
    SUBSTITUTION_MODEL_NAME,
    SUBSTITUTION_MODEL_VERSION,
    Calibrator,
)
from .registry import recommender_get

logger = logging.getLogger(__name__)

ACTION_CODE = "substitute_sku"
# Similarity is computed for every candidate, stock only for this many times the shown
# candidates, because stock and ETA cost a query each.
STOCK_CHECK_FACTOR = 4


def substitution_recommend(*, order_line: OrderLine, quantity_short: int) -> Recommendation:
    """Rank substitutes for a short line with the configured recommender and propose the best."""
    return recommender_get("substitution").recommend(
        order_line=order_line, quantity_short=quantity_short
    )


@dataclass
class _Scored:
    sku: Sku
    similarity: float
    parts: dict[str, float]
    margin_per_unit: Decimal | None
    rank_score: float


class SubstitutionRecommender:
    model_name = SUBSTITUTION_MODEL_NAME
    model_version = SUBSTITUTION_MODEL_VERSION

    def recommend(self, *, order_line: OrderLine, quantity_short: int) -> Recommendation:
        ordered = _ordered_sku(order_line, quantity_short)
        order = order_line.order
        recommendation = Recommendation(
            action_code=ACTION_CODE, model_name=self.model_name, model_version=self.model_version
        )

        scored = _score_candidates(ordered, channel=order.channel)
        max_candidates = settings.OMSGUARD_SUBSTITUTION_MAX_CANDIDATES
        candidates = _with_stock(
            scored[: max_candidates * STOCK_CHECK_FACTOR], quantity_short=quantity_short
        )[:max_candidates]
        recommendation.candidates = candidates

        if not candidates:
            recommendation.explanation = (
                f"No active {ordered.currency} SKU other than {ordered.code} has stock or a "
                "replenishment ETA and may stand in for it; nothing was proposed."
            )
            _log_outcome(order_line, recommendation)
            return recommendation

        top = candidates[0]
        if not top["stock"]["sufficient"]:
            recommendation.explanation = (
                f"No candidate has {quantity_short} unit(s) in stock now; the candidates are "
                "shown with their replenishment ETA and nothing was proposed."
            )
            _log_outcome(order_line, recommendation)
            return recommendation

        recommendation.chosen = top
        recommendation.confidence = Decimal(top["confidence"])
        recommendation.explanation = _explain(ordered, top, channel=order.channel)
        recommendation.decision = _propose(
            order_line,
            ordered=ordered,
            top=top,
            candidates=candidates,
            quantity_short=quantity_short,
            rationale=recommendation.explanation,
        )
        recommendation.model_version = recommendation.decision.model_version
        _log_outcome(order_line, recommendation)
        return recommendation


def _ordered_sku(order_line: OrderLine, quantity_short: int) -> Sku:
    if order_line.sku_id is None:
        raise RecommendationError(
            "line_unmapped",
            f"Line {order_line.position} has no mapped SKU; map it before looking for a "
            "substitute.",
            field="line",
        )
    if not 1 <= quantity_short <= order_line.quantity:
        raise RecommendationError(
            "invalid_quantity",
            f"quantity_short must be between 1 and the line's quantity ({order_line.quantity}); "
            f"got {quantity_short}.",
            field="quantity_short",
        )
    return order_line.sku


def _score_candidates(ordered: Sku, *, channel) -> list[_Scored]:
    """Score every eligible SKU, best ranking score first.

    NOTE: this scores all active SKUs of the currency in Python, like the unmapped-SKU
    matcher. Large catalogs need a pre-filter (category or trigram index) first.
    """
    excluded = _not_a_substitute_ids(channel)
    if excluded is None:
        return []

    pool = (
        Sku.objects.filter(is_active=True, currency=ordered.currency)
        .exclude(pk=ordered.pk)
        .exclude(pk__in=excluded)
        .order_by("code")
    )
    weights = _normalised(settings.OMSGUARD_SUBSTITUTION_WEIGHTS)
    margin_weight = float(settings.OMSGUARD_SUBSTITUTION_MARGIN_WEIGHT)
    ordered_attributes = _attribute_pairs(ordered.attributes)

    scored = []
    for candidate in pool.iterator(chunk_size=2000):
        parts = _similarity_parts(ordered, candidate, ordered_attributes)
        similarity = sum(weights[name] * parts[name] for name in weights)
        margin = _margin_per_unit(ordered, candidate)
        rank_score = similarity + margin_weight * _margin_share(margin, ordered.price)
        scored.append(_Scored(candidate, similarity, parts, margin, rank_score))

    scored.sort(key=lambda item: (-item.rank_score, item.sku.code))
    return scored


def _not_a_substitute_ids(channel) -> set[int] | None:
    """SKU ids the channel's listings forbid as substitutes; None when all are forbidden."""
    constraints = ListingConstraint.objects.filter(
        channel=channel, kind=ListingConstraintKind.NOT_A_SUBSTITUTE
    ).values_list("sku_id", flat=True)
    ids = set(constraints)
    if None in ids:
        return None
    return ids


def _similarity_parts(ordered: Sku, candidate: Sku, ordered_attributes: set) -> dict[str, float]:
    title = fuzz.WRatio(ordered.normalized_title, candidate.normalized_title) / 100.0

    candidate_attributes = _attribute_pairs(candidate.attributes)
    union = ordered_attributes | candidate_attributes
    attributes = len(ordered_attributes & candidate_attributes) / len(union) if union else 0.5

    same_category = bool(ordered.category.strip()) and (
        ordered.category.strip().casefold() == candidate.category.strip().casefold()
    )

    band = Decimal(settings.OMSGUARD_SUBSTITUTION_PRICE_BAND)
    if ordered.price > 0:
        in_band = abs(candidate.price - ordered.price) / ordered.price <= band
    else:
        in_band = candidate.price == ordered.price
    return {
        "title": round(title, 4),
        "attributes": round(attributes, 4),
        "category": 1.0 if same_category else 0.0,
        "price": 1.0 if in_band else 0.0,
    }


def _attribute_pairs(attributes: object) -> set[tuple[str, str]]:
    if not isinstance(attributes, dict):
        return set()
    return {
        (normalize_attribute_key(str(key)), normalize_title(str(value)))
        for key, value in attributes.items()
        if str(value).strip()
    }


def _margin_per_unit(ordered: Sku, candidate: Sku) -> Decimal | None:
    """Margin change per unit: the customer pays the ordered price either way."""
    if ordered.cost is None or candidate.cost is None:
        return None
    return ordered.cost - candidate.cost


def _margin_share(margin: Decimal | None, price: Decimal) -> float:
    if margin is None or price <= 0:
        return 0.0
    return max(-1.0, min(1.0, float(margin / price)))


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def _with_stock(scored: list[_Scored], *, quantity_short: int) -> list[dict]:
    """Add stock, ETA and confidence; drop candidates with neither stock nor an ETA."""
    calibrator = Calibrator()
    candidates = []
    for item in scored:
        availability = stock_availability(sku=item.sku)
        sufficient = availability.tracked and availability.available >= quantity_short
        eta = replenishment_eta(item.sku)
        if not sufficient and eta is None:
            continue

        calibration = calibrator.calibrate(item.similarity)
        candidates.append(
            {
                "sku": item.sku.code,
                "title": item.sku.title,
                "price": str(item.sku.price),
                "currency": item.sku.currency,
                "similarity": round(item.similarity, 4),
                "similarity_parts": item.parts,
                "rank_score": round(item.rank_score, 4),
                "confidence": str(calibration.confidence),
                "calibration": calibration.as_dict(),
                "margin_impact_per_unit": (
                    str(item.margin_per_unit) if item.margin_per_unit is not None else None
                ),
                "stock": {
                    "tracked": availability.tracked,
                    "available": availability.available,
                    "sufficient": sufficient,
                    "as_of": availability.as_of.isoformat() if availability.as_of else None,
                    "is_stale": availability.is_stale,
                },
                "replenishment_eta": eta.isoformat() if eta else None,
            }
        )
    # Python's sort is stable, so the ranking order holds within each group.
    candidates.sort(key=lambda candidate: not candidate["stock"]["sufficient"])
    return candidates


def _explain(ordered: Sku, top: dict, *, channel) -> str:
    parts = top["similarity_parts"]
    text = (
        f"{top['sku']} for {ordered.code}: similarity {top['similarity']} (title "
        f"{parts['title']}, attributes {parts['attributes']}, category {parts['category']}, "
        f"price band {parts['price']}), confidence {top['confidence']}, "
        f"{top['stock']['available']} available."
    )
    if top["margin_impact_per_unit"] is not None:
        text += f" Margin change per unit: {top['currency']} {top['margin_impact_per_unit']}."
    if listing_forbids(channel=channel, sku=ordered, kind=ListingConstraintKind.NO_SUBSTITUTION):
        text += (
            f" The channel's listing forbids substituting {ordered.code}; the proposal is "
            "recorded and blocked."
        )
    return text


def _propose(
    order_line: OrderLine,
    *,
    ordered: Sku,
    top: dict,
    candidates: list[dict],
    quantity_short: int,
    rationale: str,
):
    from guardrails.rollouts import recommender_version_for
    from guardrails.services import decision_propose

    # NOTE: the version is only stamped: this recommender reads no settings from the
    # version's config yet, so a canary of a new version changes nothing it proposes.
    calibration = top["calibration"]
    return decision_propose(
        order_id=order_line.order_id,
        action_code=ACTION_CODE,
        before={"line": order_line.position, "sku": ordered.code},
        after={"line": order_line.position, "sku": top["sku"]},
        confidence=Decimal(top["confidence"]),
        model_name=SUBSTITUTION_MODEL_NAME,
        model_version=recommender_version_for(
            order=order_line.order,
            action_code=ACTION_CODE,
            model_name=SUBSTITUTION_MODEL_NAME,
            default=SUBSTITUTION_MODEL_VERSION,
        ),
        rationale=rationale,
        extra_facts={
            "recommendation": {
                "recommender": SUBSTITUTION_MODEL_NAME,
                "similarity": top["similarity"],
                "similarity_bucket": calibration["bucket"],
                "quantity_short": quantity_short,
                "ordered_sku_eta": _iso_or_none(replenishment_eta(ordered)),
                "candidates": candidates,
            }
        },
    )


def _iso_or_none(value) -> str | None:
    return value.isoformat() if value else None


def _log_outcome(order_line: OrderLine, recommendation: Recommendation) -> None:
    decision = recommendation.decision
    logger.info(
        "substitution recommended",
        extra={
            "order": order_line.order_id,
            "line": order_line.position,
            "candidates": len(recommendation.candidates),
            "chosen": recommendation.chosen["sku"] if recommendation.chosen else None,
            "decision": decision.pk if decision else None,
            "verdict": decision.verdict if decision else None,
        },
    )
