"""Stock per SKU and location, the events that change it, reservations and counted discrepancies."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from catalog.models import Sku
from orders.models import Order, OrderLine


class LocationKind(models.TextChoices):
    WAREHOUSE = "warehouse", "Warehouse"
    STORE = "store", "Store"
    THIRD_PARTY = "3pl", "Third-party logistics (3PL)"


class Location(models.Model):
    """A place that stores stock: our warehouse, a store, or a 3PL's warehouse."""

    code = models.SlugField(max_length=64, unique=True, help_text="Used in stock events.")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=LocationKind.choices)
    is_active = models.BooleanField(
        default=True, help_text="Inactive locations still record stock but get no reservations."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_kind_display()})"


class StockLevel(models.Model):
    """The stock of one SKU at one location, as of the last applied stock event.

    A SKU with no stock level at any location is not stock-tracked.
    """

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="stock_levels")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_levels")
    on_hand = models.PositiveIntegerField(default=0)
    reserved = models.PositiveIntegerField(default=0)
    version = models.BigIntegerField(
        default=0, help_text="Source version of the last applied stock event; 0 before any."
    )
    counted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the source counted the stock of the last applied event (snapshot time).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sku", "location"], name="stock_level_unique"),
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_not_negative"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_reserved_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")), name="stock_reserved_within_on_hand"
            ),
        ]
        ordering = ["sku", "location"]
        permissions = [
            ("reset_version_stocklevel", "Can reset the applied source version of a stock level")
        ]

    def __str__(self) -> str:
        return f"{self.sku.code} at {self.location.code}"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class StockEventKind(models.TextChoices):
    DELTA = "delta", "Delta (add or remove units)"
    ABSOLUTE = "absolute", "Absolute (the counted quantity)"


class StockEventOutcome(models.TextChoices):
    APPLIED = "applied", "Applied"
    STALE = "stale", "Stale: not newer than the applied version"
    REJECTED = "rejected", "Rejected"
    # Only returned to the sender of a replay and never stored: the first record is kept.
    DUPLICATE = "duplicate", "Duplicate of an earlier event"


class StockEvent(models.Model):
    """One stock change as a source sent it, with what it did. Append-only."""

    source = models.CharField(max_length=64, help_text="The system that sent the event.")
    event_id = models.CharField(max_length=200, help_text="The source's own id for the event.")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="stock_events")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_events")
    kind = models.CharField(max_length=16, choices=StockEventKind.choices)
    quantity = models.IntegerField(help_text="Units to add (negative: remove), or the count.")
    version = models.BigIntegerField(help_text="Source version for this SKU and location.")
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=StockEventOutcome.choices)
    reason = models.TextField(blank=True, help_text="Why the event was stale or rejected.")
    on_hand_before = models.PositiveIntegerField()
    on_hand_after = models.PositiveIntegerField()
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["source", "event_id"], name="stock_event_unique_id")
        ]
        indexes = [models.Index(fields=["sku", "location", "received_at"])]
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source}:{self.event_id} ({self.outcome})"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RELEASED = "released", "Released"
    CONSUMED = "consumed", "Consumed (shipped)"


class Reservation(models.Model):
    """Units of one stock level promised to one order line."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="reservations")
    order_line = models.ForeignKey(OrderLine, on_delete=models.PROTECT, related_name="reservations")
    stock_level = models.ForeignKey(
        StockLevel, on_delete=models.PROTECT, related_name="reservations"
    )
    quantity = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_quantity_positive"
            ),
            # A line is reserved at most once at a time, also when two processes try at once.
            models.UniqueConstraint(
                fields=["order_line"],
                condition=Q(status="active"),
                name="reservation_one_active_per_line",
            ),
        ]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.order_line_id} ({self.status})"


class InventoryDiscrepancy(models.Model):
    """A physical count that differed from the stock we held; feeds the discrepancy-rate KPI."""

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="discrepancies")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="discrepancies")
    expected = models.PositiveIntegerField(help_text="On hand in OMS Guard when counted.")
    counted = models.PositiveIntegerField()
    difference = models.IntegerField(help_text="Counted minus expected.")
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stock_discrepancies"
    )
    note = models.TextField(blank=True)
    correction = models.OneToOneField(
        StockEvent,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="discrepancy",
        help_text="The absolute stock event that set on hand to the count, if one was posted.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "inventory discrepancies"

    def __str__(self) -> str:
        return f"{self.sku.code} at {self.location.code}: {self.difference:+d}"


class Replenishment(models.Model):
    """Units expected to arrive at a location, e.g. an open purchase order or a transfer.

    `inventory.selectors.replenishment_eta` reads the earliest future arrival per SKU.
    """

    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="replenishments")
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="replenishments")
    quantity = models.PositiveIntegerField()
    expected_at = models.DateTimeField(db_index=True)
    source_reference = models.CharField(
        max_length=200, blank=True, help_text="The purchase order or transfer id at the source."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["expected_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="replenishment_quantity_positive"
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.sku.code} to {self.location.code} by {self.expected_at}"
