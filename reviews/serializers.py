from rest_framework import serializers

from .models import ReviewItem


def review_item_channel_code(item: ReviewItem) -> str | None:
    """Return the code of the channel an item is about, or None when it names none.

    An unprocessable delivery's item has no order but a delivery. A known-answer item has
    neither, so its channel is the one its case copied into `source_data["order"]`, if any.
    """
    if item.order_id is not None:
        return item.order.channel.code
    if item.delivery_id is not None:
        return item.delivery.channel.code
    source = item.source_data if isinstance(item.source_data, dict) else {}
    copied_order = source.get("order")
    channel = copied_order.get("channel") if isinstance(copied_order, dict) else None
    return channel if isinstance(channel, str) and channel else None


class ReviewItemSerializer(serializers.ModelSerializer):
    order_number = serializers.SerializerMethodField()
    channel = serializers.SerializerMethodField()

    def get_order_number(self, item: ReviewItem) -> str | None:
        return item.order.order_number if item.order_id else None

    def get_channel(self, item: ReviewItem) -> str | None:
        return review_item_channel_code(item)

    decided_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    assignee = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ReviewItem
        fields = [
            "id",
            "kind",
            "status",
            "order",
            "delivery",
            "order_number",
            "channel",
            "reason",
            "source_data",
            "proposal",
            "created_at",
            "decided_at",
            "decided_by",
            "decision",
            "decision_note",
            "revision",
            "action_code",
            "confidence",
            "approver_group",
            "order_version",
            "due_at",
            "sla_minutes",
            "on_sla_breach",
            "sla_breached_at",
            "escalated_to",
            "escalated_at",
            "assignee",
            "claimed_until",
        ]
        read_only_fields = fields


class AcceptInputSerializer(serializers.Serializer):
    sku_id = serializers.IntegerField(
        required=False, min_value=1, help_text="SKU to map the line to; default: best candidate."
    )
    service_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Carrier service an unknown carrier code stands for; default: the suggestion.",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class RejectInputSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class ReviseInputSerializer(serializers.Serializer):
    revision = serializers.JSONField(
        help_text=(
            'The corrected value: a full address object for address items; {"sku": code} '
            'for substitutions; {"carrier_service": "carrier/service"} for carrier '
            'proposals; {"sku_id": id} for unmapped SKUs; {"service_id": id} for '
            "unknown carrier codes."
        )
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate_revision(self, value: object) -> dict:
        if not isinstance(value, dict) or not value:
            raise serializers.ValidationError("Must be a non-empty JSON object.")
        return value
