"""Inbound deliveries and the canonical orders built from them."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from catalog.models import Channel, Sku, currency_validator

from .carrier_codes import normalize_carrier_code

country_code_validator = RegexValidator(
    r"^[A-Z]{2}$", "Use a two-letter ISO 3166-1 country code in capitals, e.g. US."
)


class DeliveryOutcome(models.TextChoices):
    RECEIVED = "received", "Received, not processed yet"
    PROCESSED = "processed", "Processed"
    DUPLICATE_ORDER = "duplicate_order", "Order already existed"
    STALE_UPDATE = "stale_update", "Update older than the stored order"
    FAILED = "failed", "Failed"
    DEAD_LETTER = "dead_letter", "Dead letter (error; needs a replay)"


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


class ServiceLevel(models.TextChoices):
    ECONOMY = "economy", "Economy"
    GROUND = "ground", "Ground / standard"
    EXPEDITED = "expedited", "Expedited"
    OVERNIGHT = "overnight", "Overnight"
    PICKUP = "pickup", "Pickup (no delivery)"


class Carrier(models.Model):
    """A canonical carrier, e.g. UPS."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CarrierService(models.Model):
    """One service of a carrier, e.g. UPS Ground: the canonical carrier/service pair."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="services")
    code = models.SlugField(max_length=64, help_text="Unique within the carrier, e.g. ground.")
    name = models.CharField(max_length=200, help_text="Full name, e.g. UPS Ground.")
    service_level = models.CharField(max_length=16, choices=ServiceLevel.choices)
    # Carrier selection data, edited by ops managers (guardrails.recommenders.carrier).
    is_active = models.BooleanField(
        default=True, help_text="Inactive services are never recommended."
    )
    reliability = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="On-time delivery rate, 0 to 1, e.g. 0.96. Empty: not yet measured.",
    )
    transit_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Promised transit time in business days (the SLA)."
    )

    class Meta:
        ordering = ["carrier__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["carrier", "code"], name="carrier_service_unique_code")
        ]

    def __str__(self) -> str:
        return self.name


class CarrierRateStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PENDING_SIGNOFF = "pending_signoff", "Pending sign-off (not used)"
    SUPERSEDED = "superseded", "Superseded"
    REJECTED = "rejected", "Rejected"


class CarrierRate(models.Model):
    """The price of one carrier service for a lane: a destination country and a weight limit.

    The carrier recommender uses the active rate of the narrowest matching lane. A change
    that would swap carriers on many recent orders waits as `pending_signoff` until an ops
    manager approves it (guardrails.recommenders.rates).
    """

    service = models.ForeignKey(CarrierService, on_delete=models.PROTECT, related_name="rates")
    destination_country = models.CharField(
        max_length=2,
        blank=True,
        validators=[country_code_validator],
        help_text="ISO 3166-1 code, e.g. US; leave empty for every destination.",
    )
    max_weight_grams = models.PositiveIntegerField(
        null=True, blank=True, help_text="Heaviest parcel the rate covers; empty for any weight."
    )
    price = models.DecimalField(
        max_digits=14, decimal_places=3, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, validators=[currency_validator])
    status = models.CharField(
        max_length=16, choices=CarrierRateStatus.choices, default=CarrierRateStatus.ACTIVE
    )
    note = models.CharField(max_length=300, blank=True, help_text="Why the rate changed.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["service", "destination_country", "max_weight_grams", "-created_at"]
        constraints = [
            # One active rate per lane; NULL weights never collide, hence two constraints.
            models.UniqueConstraint(
                fields=["service", "destination_country", "max_weight_grams"],
                condition=models.Q(status="active", max_weight_grams__isnull=False),
                name="carrier_rate_one_active_per_lane",
            ),
            models.UniqueConstraint(
                fields=["service", "destination_country"],
                condition=models.Q(status="active", max_weight_grams__isnull=True),
                name="carrier_rate_one_active_per_lane_any_weight",
            ),
        ]
        permissions = [("approve_carrierrate", "Can approve or reject pending carrier rates")]

    def __str__(self) -> str:
        lane = self.destination_country or "any country"
        if self.max_weight_grams is not None:
            lane += f", up to {self.max_weight_grams} g"
        return f"{self.service} ({lane}): {self.currency} {self.price} [{self.status}]"


class CarrierCodeMapping(models.Model):
    """A channel's carrier/service code for one canonical carrier service.

    Lookups use the folded code (see normalize_carrier_code). The most specific mapping wins:
    this channel and this destination country, then this channel, then any channel with
    the country, then any channel.
    """

    channel = models.ForeignKey(
        Channel,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="carrier_mappings",
        help_text="Leave empty for a code every channel uses, e.g. a carrier's own code.",
    )
    code = models.CharField(
        max_length=200, help_text="The code as the channel sends it, e.g. 'UPS Ground' or '03'."
    )
    normalized_code = models.CharField(max_length=200, editable=False, db_index=True)
    destination_country = models.CharField(
        max_length=2,
        blank=True,
        validators=[country_code_validator],
        help_text=(
            "Only for orders shipped to this country (ISO 3166-1, e.g. JP); leave empty for "
            "every destination. Channels often reuse one rate name, such as 'Standard', for "
            "different carriers in different shipping zones."
        ),
    )
    service = models.ForeignKey(
        CarrierService, on_delete=models.PROTECT, related_name="code_mappings"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["normalized_code", "destination_country"]
        verbose_name = "carrier code mapping"
        # Two constraints, because NULL channels never collide in a unique index.
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "destination_country", "normalized_code"],
                condition=models.Q(channel__isnull=False),
                name="carrier_mapping_unique_per_channel",
            ),
            models.UniqueConstraint(
                fields=["destination_country", "normalized_code"],
                condition=models.Q(channel__isnull=True),
                name="carrier_mapping_unique_any_channel",
            ),
        ]

    def __str__(self) -> str:
        scope = self.channel.code if self.channel_id else "any channel"
        if self.destination_country:
            scope += f", to {self.destination_country}"
        return f"{self.code!r} ({scope}) -> {self.service}"

    def save(self, *args, **kwargs) -> None:
        self.normalized_code = normalize_carrier_code(self.code)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # The folded code is not a form field, so the admin form cannot check the unique
        # constraints on it. This check does that job instead.
        self.normalized_code = normalize_carrier_code(self.code)
        if not self.normalized_code:
            raise ValidationError({"code": "The code needs at least one letter or digit."})
        clash = (
            CarrierCodeMapping.objects.filter(
                channel=self.channel_id,
                destination_country=self.destination_country,
                normalized_code=self.normalized_code,
            )
            .exclude(pk=self.pk)
            .select_related("service")
            .first()
        )
        if clash is not None:
            message = f"This scope already has the same code: {clash.code!r} -> {clash.service}."
            raise ValidationError({"code": message})


class OrderStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    VALIDATED = "validated", "Validated"
    ON_HOLD = "on_hold", "On hold"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    READY = "ready", "Ready for fulfilment"
    CANCELLED = "cancelled", "Cancelled"


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
    customer_id = models.CharField(max_length=100, blank=True)
    in_store_pickup = models.BooleanField(
        default=False, help_text="The customer collects the order at a store."
    )
    shipping_address = models.JSONField(null=True, blank=True)
    billing_address = models.JSONField(null=True, blank=True)
    shipping_method = models.CharField(max_length=200, blank=True)
    shipping_lines = models.JSONField(
        default=list,
        blank=True,
        help_text="The channel's shipping lines: code, title, source, carrier id and price.",
    )
    carrier_service = models.ForeignKey(
        CarrierService,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="orders",
        help_text="The canonical service of the first shipping line, once its code is mapped.",
    )
    address_score = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Shipping address validation score, 0 to 1; empty when not checked.",
    )
    address_reasons = models.JSONField(
        default=list,
        blank=True,
        help_text="Why the address lost score: code, field, message and severity per reason.",
    )
    placed_at = models.DateTimeField(null=True, blank=True)
    source_updated_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the channel last changed the order; older updates are not applied.",
    )
    version = models.PositiveIntegerField(
        default=1,
        help_text=(
            "Goes up with every material change (a channel update, an address, line, carrier "
            "or status change); a review approval given for an older version is refused."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "channel_order_id"], name="order_unique_per_channel"
            )
        ]
        ordering = ["-created_at"]
        indexes = [
            # A channel's latest orders: the routing check reads its last 500 for each new
            # order (orders.hygiene.escalation), which otherwise sorts the whole channel.
            models.Index(fields=["channel", "-created_at"], name="order_channel_recent_idx"),
        ]
        permissions = [
            ("ingest_any_channel", "Can post canonical orders for any channel"),
            ("export_history", "Can export order history"),
            ("view_customer_pii", "Can see customer names, emails and addresses in full"),
        ]

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

    @property
    def identifier_label(self) -> str:
        """How people recognise the line's channel identifier: its SKU, else its variant."""
        if self.channel_sku:
            return self.channel_sku
        if self.channel_variant_id:
            return f"variant {self.channel_variant_id}"
        return "no SKU"


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
        indexes = [
            models.Index(fields=["order", "created_at"]),
            # KPI rollups count events of one kind per hour.
            models.Index(fields=["kind", "created_at"], name="order_event_kind_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.order_id}"


class IdempotencyKey(models.Model):
    """The first response to an API request made with an Idempotency-Key, replayed on retries."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_keys"
    )
    key = models.CharField(max_length=200)
    request_sha256 = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"


class ChannelApiGrant(models.Model):
    """One channel an API user may post canonical orders for."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="channel_api_grants"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="api_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "channel"], name="channel_api_grant_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} -> {self.channel.code}"


class PriorityCustomer(models.Model):
    """A customer whose orders get a "priority_customer" flag on one channel."""

    channel = models.ForeignKey(
        Channel, on_delete=models.CASCADE, related_name="priority_customers"
    )
    customer_id = models.CharField(
        max_length=100, blank=True, help_text="The channel's customer id, if it sends one."
    )
    email = models.EmailField(blank=True, help_text="Matched without regard to case.")
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(customer_id="", email=""),
                name="priority_customer_needs_id_or_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel.code} {self.customer_id or self.email}"


class ShipmentStatus(models.TextChoices):
    SHIPPED = "shipped", "Shipped"
    DELIVERED = "delivered", "Delivered"
    DELIVERY_FAILED = "delivery_failed", "Delivery failed"
    RETURNED_TO_SENDER = "returned_to_sender", "Returned to sender"


# Statuses that count as a shipping error, e.g. for orders whose address was corrected.
SHIPPING_ERROR_STATUSES = frozenset(
    {ShipmentStatus.DELIVERY_FAILED, ShipmentStatus.RETURNED_TO_SENDER}
)


class Shipment(models.Model):
    """A parcel a warehouse or 3PL reported as shipped, through POST /api/v1/shipments/."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="shipments")
    # Copied from the order so KPI rollups group by channel without a join.
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="shipments")
    shipment_id = models.CharField(
        max_length=100, help_text="The sender's own id for the parcel; unique per order."
    )
    carrier_service = models.ForeignKey(
        CarrierService,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shipments",
        help_text="Resolved from carrier_code when it maps to a known service.",
    )
    carrier_code = models.CharField(
        max_length=64, blank=True, help_text="The carrier as the sender named it, e.g. ups."
    )
    tracking_number = models.CharField(max_length=100, blank=True)
    lines = models.JSONField(
        default=list, help_text='What the parcel holds: [{"sku": "MUG-1", "quantity": 2}].'
    )
    shipped_at = models.DateTimeField(db_index=True)
    status = models.CharField(
        max_length=32, choices=ShipmentStatus.choices, default=ShipmentStatus.SHIPPED
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    is_duplicate = models.BooleanField(
        default=False,
        help_text="The order's earlier shipments already held these lines: shipped twice.",
    )
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    address_corrected = models.BooleanField(
        default=False,
        help_text="The order's address was corrected (by the AI or a person) before it shipped.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-shipped_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "shipment_id"], name="shipment_unique_per_order"
            )
        ]
        indexes = [models.Index(fields=["channel", "shipped_at"], name="shipment_channel_time")]

    def __str__(self) -> str:
        return f"shipment {self.shipment_id} of order {self.order_id}"


class FulfilmentStage(models.TextChoices):
    PICK = "pick", "Pick"
    PACK = "pack", "Pack"
    SHIP = "ship", "Ship"


class FulfilmentExceptionReason(models.TextChoices):
    WRONG_ITEM = "wrong_item", "Wrong item"
    WRONG_QUANTITY = "wrong_quantity", "Wrong quantity"
    MISSING_ITEM = "missing_item", "Missing item"
    DAMAGED = "damaged", "Damaged"
    WRONG_ADDRESS = "wrong_address", "Wrong address"
    WRONG_CARRIER = "wrong_carrier", "Wrong carrier or service"
    LATE = "late", "Shipped late"
    OTHER = "other", "Other"


class FulfilmentException(models.Model):
    """A pick, pack or ship mistake the warehouse reported."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fulfilment_exceptions")
    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="fulfilment_exceptions"
    )
    shipment = models.ForeignKey(
        Shipment, on_delete=models.PROTECT, null=True, blank=True, related_name="exceptions"
    )
    stage = models.CharField(max_length=8, choices=FulfilmentStage.choices)
    reason = models.CharField(max_length=32, choices=FulfilmentExceptionReason.choices)
    note = models.TextField(blank=True)
    occurred_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["channel", "occurred_at"], name="fulfil_exc_channel_time")]

    def __str__(self) -> str:
        return f"{self.stage} exception ({self.reason}) on order {self.order_id}"


class ReturnReason(models.TextChoices):
    WRONG_ITEM = "wrong_item", "Wrong item sent"
    WRONG_QUANTITY = "wrong_quantity", "Wrong quantity sent"
    DAMAGED_IN_TRANSIT = "damaged_in_transit", "Damaged in transit"
    LATE_DELIVERY = "late_delivery", "Arrived too late"
    SUBSTITUTE_UNWANTED = "substitute_unwanted", "Substitute not wanted"
    DEFECTIVE = "defective", "Defective product"
    NOT_AS_DESCRIBED = "not_as_described", "Not as described"
    SIZE_OR_FIT = "size_or_fit", "Size or fit"
    CHANGED_MIND = "changed_mind", "Changed mind"
    OTHER = "other", "Other"


class ReturnAttribution(models.TextChoices):
    FULFILMENT = "fulfilment", "Fulfilment error"
    SUBSTITUTION = "substitution", "Substitution"
    PRODUCT = "product", "Product"
    CUSTOMER = "customer", "Customer"


# Reason codes that mean the warehouse or carrier got the order wrong.
FULFILMENT_RETURN_REASONS = frozenset(
    {
        ReturnReason.WRONG_ITEM,
        ReturnReason.WRONG_QUANTITY,
        ReturnReason.DAMAGED_IN_TRANSIT,
        ReturnReason.LATE_DELIVERY,
    }
)


class OrderReturn(models.Model):
    """A customer return with its reason code, through POST /api/v1/returns/."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="returns")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="returns")
    return_id = models.CharField(
        max_length=100, help_text="The sender's own id for the return; unique per order."
    )
    reason = models.CharField(max_length=32, choices=ReturnReason.choices)
    attributed_to = models.CharField(
        max_length=16,
        choices=ReturnAttribution.choices,
        help_text="Derived from the reason code and whether a returned line was substituted.",
    )
    involves_substitution = models.BooleanField(
        default=False, help_text="A returned line carries a SKU that replaced the ordered one."
    )
    lines = models.JSONField(default=list, help_text='[{"sku": "MUG-1", "quantity": 1}]')
    note = models.TextField(blank=True)
    received_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "return_id"], name="return_unique_per_order")
        ]
        indexes = [models.Index(fields=["channel", "received_at"], name="return_channel_time")]

    def __str__(self) -> str:
        return f"return {self.return_id} of order {self.order_id}"


class Chargeback(models.Model):
    """A payment dispute a marketplace or payment provider reported, with its amount."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="chargebacks")
    channel = models.ForeignKey(Channel, on_delete=models.PROTECT, related_name="chargebacks")
    chargeback_id = models.CharField(
        max_length=100, help_text="The sender's own id for the dispute; unique per order."
    )
    amount = models.DecimalField(max_digits=14, decimal_places=3)
    currency = models.CharField(max_length=3, validators=[currency_validator])
    reason = models.CharField(
        max_length=100, blank=True, help_text="The provider's reason code, kept as sent."
    )
    received_at = models.DateTimeField(db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "chargeback_id"], name="chargeback_unique_per_order"
            )
        ]
        indexes = [models.Index(fields=["channel", "received_at"], name="chargeback_channel_time")]

    def __str__(self) -> str:
        return f"chargeback {self.chargeback_id} of order {self.order_id}"
