"""Exception queue items that wait for a person."""

from django.conf import settings
from django.db import models

from orders.models import Order, OrderLine


class ReviewKind(models.TextChoices):
    UNMAPPED_SKU = "unmapped_sku", "Unmapped SKU"
    ADDRESS = "address", "Address"
    CARRIER_CODE = "carrier_code", "Unknown carrier code"
    OUT_OF_STOCK = "out_of_stock", "Out of stock"
    DELIVERY_FAILED = "delivery_failed", "Unprocessable delivery"
    SUBSTITUTION = "substitution", "Substitution"
    ROUTING = "routing", "Unusual routing"
    AI_ACTION = "ai_action", "AI proposal"


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    RESOLVED = "resolved", "Resolved by another decision"


class ReviewItem(models.Model):
    kind = models.CharField(max_length=32, choices=ReviewKind.choices)
    status = models.CharField(
        max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    # Empty only for an unprocessable delivery, which never became an order.
    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, null=True, blank=True, related_name="review_items"
    )
    delivery = models.ForeignKey(
        "orders.Delivery",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="review_items",
        help_text="The unprocessable delivery, for items of that kind.",
    )
    order_line = models.ForeignKey(
        OrderLine, on_delete=models.CASCADE, null=True, blank=True, related_name="review_items"
    )
    reason = models.TextField(help_text="Why the item is in the queue, in a sentence.")
    source_data = models.JSONField(help_text="The channel data the item is about, as received.")
    proposal = models.JSONField(
        default=dict, blank=True, help_text="What automation proposes, e.g. candidate SKUs."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="review_decisions",
    )
    decision = models.JSONField(null=True, blank=True, help_text="What the reviewer decided.")
    decision_note = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["status", "kind", "created_at"])]
        permissions = [("decide_reviewitem", "Can accept or reject review items")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == ReviewStatus.OPEN
