"""Inbound deliveries and the canonical orders built from them."""

from django.conf import settings
from django.db import models

from catalog.models import Channel, Sku, currency_validator


class DeliveryOutcome(models.TextChoices):
    RECEIVED = "received", "Received, not processed yet"
    PROCESSED = "processed", "Processed"
    DUPLICATE_ORDER = "duplicate_order", "Order already existed"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One inbound webhook call, stored as received before any processing."""

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="deliveries")
    delivery_id = models.CharField(
        max_length=200, help_text="The channel's own id for this delivery (webhook id)."
    )
    topic = models.CharField(max_length=100)
    event_id = models.CharField(max_length=200, blank=True)
    triggered_at = models.DateTimeField(null=True, blank=True)
    headers = models.JSONField(default=dict, help_text="The channel's headers (never secrets).")
    body = models.BinaryField(help_text="Raw request body, byte for byte.")
    signature_valid = models.BooleanField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=32, choices=DeliveryOutcome.choices, default=DeliveryOutcome.RECEIVED
    )
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    processed_by = models.CharField(
        max_length=200, blank=True, help_text="Worker host name, or 'eager' for in-process runs."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "delivery_id"], name="delivery_unique_per_channel"
            )
        ]
        indexes = [models.Index(fields=["outcome", "received_at"])]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.channel.code} {self.topic} {self.delivery_id}"


class OrderStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VALIDATED = "validated", "Validated"
    ON_HOLD = "on_hold", "On hold"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    READY = "ready", "Ready for fulfilment"


class Order(models.Model):
    """The canonical order, with its provenance."""

    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="orders")
    channel_order_id = models.CharField(max_length=100)
    order_number = models.CharField(max_length=100, blank=True)
    source_name = models.CharField(max_length=100, blank=True)
    marketplace = models.CharField(max_length=100, blank=True)
    pos_register = models.CharField(max_length=100, blank=True)
    delivery = models.ForeignKey(
        Delivery, on_delete=models.PROTECT, related_name="orders", help_text="First delivery."
    )
    event_version = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=32, choices=OrderStatus.choices, default=OrderStatus.RECEIVED, db_index=True
    )
    hold_reasons = models.JSONField(default=list, blank=True)
    flags = models.JSONField(
        default=list, blank=True, help_text="Findings shown to people that hold nothing."
    )
    currency = models.CharField(max_length=3, validators=[currency_validator])
    subtotal = models.DecimalField(max_digits=14, decimal_places=3)
    shipping_total = models.DecimalField(max_digits=14, decimal_places=3)
    tax_total = models.DecimalField(max_digits=14, decimal_places=3)
    discount_total = models.DecimalField(max_digits=14, decimal_places=3)
    total = models.DecimalField(max_digits=14, decimal_places=3)
    taxes_included = models.BooleanField(
        default=False, help_text="Line prices already include tax (common in the EU)."
    )
    presentment_currency = models.CharField(max_length=3, blank=True)
    presentment_total = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    customer_email = models.EmailField(blank=True)
    customer_name = models.CharField(max_length=300, blank=True)
    shipping_address = models.JSONField(null=True, blank=True)
    billing_address = models.JSONField(null=True, blank=True)
    shipping_method = models.CharField(max_length=200, blank=True)
    placed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "channel_order_id"], name="order_unique_per_channel"
            )
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.order_number or self.channel_order_id}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    channel_line_id = models.CharField(max_length=100, blank=True)
    channel_sku = models.CharField(max_length=200, blank=True)
    channel_variant_id = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=500)
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=14, decimal_places=3)
    sku = models.ForeignKey(
        Sku, on_delete=models.PROTECT, null=True, blank=True, related_name="order_lines"
    )
    raw = models.JSONField(help_text="The line exactly as the channel sent it.")

    class Meta:
        ordering = ["order", "position"]
        constraints = [
            models.UniqueConstraint(fields=["order", "position"], name="line_unique_position")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.title}"


class ActorKind(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    INTEGRATION = "integration", "Integration"


class OrderEvent(models.Model):
    """One entry in an order's timeline."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=64)
    message = models.TextField()
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["order", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} on {self.order_id}"
