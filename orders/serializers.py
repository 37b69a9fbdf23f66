from rest_framework import serializers

from .models import Order, OrderLine


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = OrderLine
        fields = [
            "position",
            "channel_line_id",
            "channel_sku",
            "channel_variant_id",
            "title",
            "quantity",
            "unit_price",
            "sku",
        ]


class OrderSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(slug_field="code", read_only=True)
    delivery_id = serializers.CharField(source="delivery.delivery_id", read_only=True)
    lines = OrderLineSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "channel",
            "channel_order_id",
            "order_number",
            "source_name",
            "marketplace",
            "pos_register",
            "delivery_id",
            "event_version",
            "status",
            "hold_reasons",
            "currency",
            "subtotal",
            "shipping_total",
            "tax_total",
            "discount_total",
            "total",
            "presentment_currency",
            "presentment_total",
            "shipping_method",
            "placed_at",
            "created_at",
            "updated_at",
            "lines",
        ]
