"""Reads for the review queue."""

from django.db.models import QuerySet

from .models import ReviewItem, ReviewKind, ReviewStatus


def review_queue_open(*, kind: str | None = None) -> QuerySet[ReviewItem]:
    """Open items, oldest first, with everything the queue page shows joined in."""
    items = (
        ReviewItem.objects.filter(status=ReviewStatus.OPEN)
        .select_related(
            "order", "order__channel", "order_line", "order_line__sku", "delivery__channel"
        )
        .order_by("created_at", "id")
    )
    if kind in ReviewKind.values:
        items = items.filter(kind=kind)
    return items


def review_open_count(*, kind: str | None = None) -> int:
    return review_queue_open(kind=kind).count()
