from rest_framework import serializers

from .models import ReviewItem


class ReviewItemSerializer(serializers.ModelSerializer):
    order_number = serializers.SerializerMethodField()
    channel = serializers.SerializerMethodField()

    def get_order_number(self, item: ReviewItem) -> str | None:
        return item.order.order_number if item.order_id else None

    def get_channel(self, item: ReviewItem) -> str:
        # An unprocessable delivery's item has no order but always a delivery.
        return (item.order or item.delivery).channel.code

    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
