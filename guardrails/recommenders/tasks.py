"""Background runs of the recommenders. Registered through CELERY_IMPORTS in settings."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from guardrails.models import Decision
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

from .base import RecommendationError
from .calibration import SUBSTITUTION_MODEL_NAME
from .substitution import substitution_recommend

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=8,
)
def substitution_for_out_of_stock(review_item_id: int) -> int | None:
    """Propose a substitute for the line of an open out-of-stock item; returns the decision id.

    Does nothing when OMSGUARD_SUBSTITUTION_ON_STOCK_OUT is off, when the item is no longer
    open, or when the recommender already proposed for this line since the item opened (a
    redelivered task).
    """
    if not settings.OMSGUARD_SUBSTITUTION_ON_STOCK_OUT:
        return None

    item = (
        ReviewItem.objects.select_related("order_line__sku", "order_line__order__channel")
        .filter(pk=review_item_id, kind=ReviewKind.OUT_OF_STOCK)
        .first()
    )
    if item is None or item.status != ReviewStatus.OPEN or item.order_line is None:
        return None

    line = item.order_line
    already = Decision.objects.filter(
        order_id=line.order_id,
        model_name=SUBSTITUTION_MODEL_NAME,
        before__line=line.position,
        created_at__gte=item.created_at,
    ).exists()
    if already:
        logger.info("substitution already proposed", extra={"review_item": item.pk})
        return None

    quantity_short = _quantity_short(item)
    try:
        recommendation = substitution_recommend(order_line=line, quantity_short=quantity_short)
    except RecommendationError as error:
        logger.warning(
            "substitution not recommended",
            extra={"review_item": item.pk, "code": error.code, "error": error.message},
        )
        return None
    except _decision_error() as error:
        logger.warning(
            "substitution proposal rejected",
            extra={"review_item": item.pk, "code": error.code, "error": str(error)},
        )
        return None
    return recommendation.decision.pk if recommendation.decision else None


def _quantity_short(item: ReviewItem) -> int:
    """Units the best location lacks, from the item's proposal; the whole line if unknown."""
    proposal = item.proposal or {}
    requested = proposal.get("requested")
    best_available = proposal.get("best_available")
    if isinstance(requested, int) and isinstance(best_available, int):
        return max(1, requested - max(best_available, 0))
    return item.order_line.quantity


def _decision_error() -> type[Exception]:
    from guardrails.services import DecisionError

    return DecisionError
