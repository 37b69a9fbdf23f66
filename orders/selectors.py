"""Reads for orders."""

from django.db.models import Prefetch, QuerySet

from .models import Order, OrderEvent, OrderLine


def order_list() -> QuerySet[Order]:
    return (
        Order.objects.select_related("channel", "delivery", "carrier_service")
        .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.select_related("sku")))
        .order_by("-created_at", "-id")
    )


def order_get_with_history(*, order_id: int) -> Order | None:
    """One order with its lines, timeline (newest first) and review items."""
    return (
        Order.objects.select_related("channel", "delivery", "carrier_service")
        .prefetch_related(
            Prefetch("lines", queryset=OrderLine.objects.select_related("sku")),
            Prefetch(
                "events",
                queryset=OrderEvent.objects.select_related("actor").order_by("-created_at", "-id"),
            ),
            "review_items",
        )
        .filter(pk=order_id)
        .first()
    )
