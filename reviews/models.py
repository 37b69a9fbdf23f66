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
    HIGH_VALUE = "high_value", "High value"
    PRIORITY_CUSTOMER = "priority_customer", "Priority customer"
    AUDIT_SAMPLE = "audit_sample", "Audit sample"


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
    revision = models.JSONField(
        null=True,
        blank=True,
        help_text="The reviewer's corrected value, stored beside the AI's proposal.",
    )

    # Routing and context, copied when the item opens so the queue filters need no joins.
    action_code = models.CharField(
        max_length=64, blank=True, help_text="The AI action of the proposal, if any."
    )
    confidence = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="The AI's confidence."
    )
    approver_group = models.CharField(
        max_length=150,
        blank=True,
        help_text="The role that may decide; empty means anyone with the decide permission.",
    )
    order_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="Order.version when the item opened; a newer one is stale."
    )

    # Service level: deadlines are stored in UTC.
    due_at = models.DateTimeField(null=True, blank=True, help_text="Decide by this time (UTC).")
    sla_minutes = models.PositiveIntegerField(null=True, blank=True)
    on_sla_breach = models.CharField(
        max_length=16, blank=True, help_text="hold_order or escalate, from the policy."
    )
    sla_breached_at = models.DateTimeField(null=True, blank=True)
    escalated_to = models.CharField(
        max_length=150, blank=True, help_text="The role the item was escalated to."
    )
    escalated_at = models.DateTimeField(null=True, blank=True)

    # Claiming: an agent takes the item for a few minutes so others skip it.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="claimed_review_items",
    )
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["status", "kind", "created_at"]),
            models.Index(fields=["status", "due_at"], name="review_item_open_due"),
            models.Index(fields=["status", "assignee"], name="review_item_open_assignee"),
        ]
        permissions = [("decide_reviewitem", "Can accept or reject review items")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == ReviewStatus.OPEN


class ConfirmationAnswer(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed the proposed address"
    CORRECTED = "corrected", "Corrected the address"


class AddressConfirmation(models.Model):
    """A one-click request to the customer to confirm or correct a low-confidence address.

    The emailed link carries a signed token naming this row's `nonce`; it expires at
    `expires_at` and works once.
    """

    review_item = models.ForeignKey(
        ReviewItem, on_delete=models.CASCADE, related_name="address_confirmations"
    )
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="address_confirmations")
    email = models.EmailField()
    proposed_address = models.JSONField(help_text="The address the customer is asked about.")
    nonce = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=16, choices=ConfirmationAnswer.choices, blank=True)
    corrected_address = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sent_at", "created_at"], name="confirmation_unsent")]

    def __str__(self) -> str:
        return f"Address confirmation for order {self.order_id}"
