from rest_framework import serializers

from catalog.models import Sku
from omsguard.json_fields import StrictIntegerField

from .models import (
    InventoryDiscrepancy,
    Location,
    StockEventKind,
    StockEventOutcome,
    StockLevel,
)
from .selectors import level_availability

# Larger deltas or counts are typing errors, and would overflow the on-hand column.
MAX_EVENT_QUANTITY = 1_000_000_000
MAX_VERSION = 2**63 - 1


class StockEventInputSerializer(serializers.Serializer):
    source = serializers.CharField(
        max_length=64, help_text="The sending system, e.g. 'pos-store-12' or 'wms'."
    )
    event_id = serializers.CharField(
        max_length=200, help_text="The source's id for this event; resending it is safe."
    )
    sku = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Sku.objects.all(),
        help_text="Canonical SKU code.",
        error_messages={"does_not_exist": "Unknown SKU code {value}."},
    )
    location = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Location.objects.all(),
        help_text="Location code.",
        error_messages={"does_not_exist": "Unknown location code {value}."},
    )
    kind = serializers.ChoiceField(choices=StockEventKind.choices)
    quantity = StrictIntegerField(
        min_value=-MAX_EVENT_QUANTITY,
        max_value=MAX_EVENT_QUANTITY,
        help_text="delta: units to add, negative to remove. absolute: units counted, 0 or more.",
    )
    version = StrictIntegerField(
        min_value=1,
        max_value=MAX_VERSION,
        help_text="Increases with every change of this SKU and location at the source.",
    )
    occurred_at = serializers.DateTimeField(
        required=False, help_text="When the source counted or changed the stock; default: now."
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["kind"] == StockEventKind.ABSOLUTE and attrs["quantity"] < 0:
            raise serializers.ValidationError(
                {"quantity": ["An absolute quantity must be 0 or more."]}
            )
        return attrs


class StockEventResultSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="event.pk")
    source = serializers.CharField(source="event.source")
    event_id = serializers.CharField(source="event.event_id")
    sku = serializers.CharField(source="event.sku.code")
    location = serializers.CharField(source="event.location.code")
    kind = serializers.ChoiceField(source="event.kind", choices=StockEventKind.choices)
    quantity = serializers.IntegerField(source="event.quantity")
    version = serializers.IntegerField(source="event.version")
    occurred_at = serializers.DateTimeField(source="event.occurred_at", allow_null=True)
    received_at = serializers.DateTimeField(source="event.received_at")
    outcome = serializers.ChoiceField(
        choices=StockEventOutcome.choices,
        help_text="What this request did; 'duplicate' for a replay of a recorded event id.",
    )
    first_outcome = serializers.ChoiceField(
        source="event.outcome",
        choices=StockEventOutcome.choices,
        help_text="What the event did when it was first received.",
    )
    reason = serializers.CharField(source="event.reason")
    on_hand_before = serializers.IntegerField(source="event.on_hand_before")
    on_hand_after = serializers.IntegerField(source="event.on_hand_after")


class StockEventBatchResultSerializer(serializers.Serializer):
    results = StockEventResultSerializer(many=True, help_text="One result per event, in order.")


class StockEventSerializer(serializers.Serializer):
    """A recorded stock event, for listing."""

    id = serializers.IntegerField()
    source = serializers.CharField()
    event_id = serializers.CharField()
    sku = serializers.CharField(source="sku.code")
    location = serializers.CharField(source="location.code")
    kind = serializers.ChoiceField(choices=StockEventKind.choices)
    quantity = serializers.IntegerField()
    version = serializers.IntegerField()
    occurred_at = serializers.DateTimeField(allow_null=True)
    received_at = serializers.DateTimeField()
    outcome = serializers.ChoiceField(choices=StockEventOutcome.choices)
    reason = serializers.CharField()
    on_hand_before = serializers.IntegerField()
    on_hand_after = serializers.IntegerField()


class StockLevelSerializer(serializers.Serializer):
    sku = serializers.CharField(source="sku.code")
    location = serializers.CharField(source="location.code")
    on_hand = serializers.IntegerField()
    reserved = serializers.IntegerField()
    available = serializers.IntegerField()
    version = serializers.IntegerField()
    counted_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()
    is_stale = serializers.SerializerMethodField(
        help_text="The count is older than OMSGUARD_STOCK_TTL_SECONDS, or none arrived yet."
    )

    def get_is_stale(self, level: StockLevel) -> bool:
        return level_availability(level).is_stale


class DiscrepancyInputSerializer(serializers.Serializer):
    sku = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Sku.objects.all(),
        error_messages={"does_not_exist": "Unknown SKU code {value}."},
    )
    location = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Location.objects.all(),
        error_messages={"does_not_exist": "Unknown location code {value}."},
    )
    counted = StrictIntegerField(min_value=0, max_value=MAX_EVENT_QUANTITY)
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    correct = serializers.BooleanField(
        default=True, help_text="Also set on hand to the counted quantity (an absolute event)."
    )


class DiscrepancySerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="sku.code")
    location = serializers.CharField(source="location.code")
    reported_by = serializers.CharField(source="reported_by.username")
    correction = StockEventSerializer(allow_null=True)

    class Meta:
        model = InventoryDiscrepancy
        fields = [
            "id",
            "sku",
            "location",
            "expected",
            "counted",
            "difference",
            "reported_by",
            "note",
            "correction",
            "created_at",
        ]
        read_only_fields = fields
