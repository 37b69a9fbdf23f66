from rest_framework import serializers

from omsguard.money import money_format

from .models import Order, OrderLine


class MoneyField(serializers.DecimalField):
    """A Decimal shown with exactly the digits of the order's currency ("44.98", "2980")."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_digits=14, decimal_places=3, read_only=True, **kwargs)

    def get_attribute(self, instance):
        order = instance if isinstance(instance, Order) else instance.order
        self._currency = order.currency
        return super().get_attribute(instance)

    def to_representation(self, value):
        return money_format(value, self._currency) if value is not None else None


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    unit_price = MoneyField()

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
    subtotal = MoneyField()
    shipping_total = MoneyField()
    tax_total = MoneyField()
    discount_total = MoneyField()
    total = MoneyField()
    presentment_total = serializers.SerializerMethodField()
    carrier_service = serializers.StringRelatedField(read_only=True)

    def get_presentment_total(self, order: Order) -> str | None:
        if order.presentment_total is None:
            return None
        return money_format(order.presentment_total, order.presentment_currency)

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
            "flags",
            "currency",
            "subtotal",
            "shipping_total",
            "tax_total",
            "discount_total",
            "total",
            "taxes_included",
            "presentment_currency",
            "presentment_total",
            "shipping_method",
            "shipping_lines",
            "carrier_service",
            "address_score",
            "address_reasons",
            "placed_at",
            "created_at",
            "updated_at",
            "lines",
        ]
