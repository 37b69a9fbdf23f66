import re
from datetime import UTC
from decimal import Decimal, InvalidOperation

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from catalog.models import ExternalIdKind
from omsguard.json_fields import (
    DisplayTextField,
    ExactFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
)
from omsguard.money import is_currency, minor_units, money_format

from .canonical import MAX_AMOUNT, MAX_LINES, MAX_QUANTITY, address_reasons_named
from .models import Delivery, Order, OrderLine


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
    carrier_service = serializers.StringRelatedField(read_only=True, allow_null=True)
    carrier_service_code = serializers.SerializerMethodField(
        help_text="'carrier/service', e.g. 'ups/ground': the form the decisions API takes."
    )
    address_reasons = serializers.SerializerMethodField(
        help_text=(
            "Why the address lost score: code, field, message and severity per reason. The "
            "field is named as in the canonical order format, such as region or postal_code."
        )
    )

    def get_address_reasons(self, order: Order) -> list[dict]:
        # Orders checked before the reasons were stored with the format's names still have
        # the stored address's names ("zip"), so the names are mapped on the way out as well.
        return address_reasons_named(order.address_reasons or [])

    def get_carrier_service_code(self, order: Order) -> str | None:
        service = order.carrier_service
        return f"{service.carrier.code}/{service.code}" if service is not None else None

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
            "carrier_service_code",
            "address_score",
            "address_reasons",
            "placed_at",
            "created_at",
            "updated_at",
            "lines",
        ]


class DeliverySerializer(serializers.ModelSerializer):
    """A delivery's processing state, without its body or headers."""

    channel = serializers.SlugRelatedField(slug_field="code", read_only=True)
    orders = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "channel",
            "delivery_id",
            "topic",
            "outcome",
            "error",
            "attempts",
            "received_at",
            "processed_at",
            "orders",
        ]


# Input of POST /api/v1/orders/: the canonical order format (samples/canonical/README.md).


# ASCII digits with an optional fraction. Decimal() alone would also take " 12.34", "+12.34",
# "1e3" and digits of other scripts, which no source means to send as an amount.
AMOUNT_FORMAT = re.compile(r"[0-9]+(\.[0-9]+)?")


class AmountField(serializers.CharField):
    """A non-negative decimal amount sent as a JSON string; floats are rejected."""

    def __init__(self, **kwargs) -> None:
        super().__init__(trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError('Send the amount as a string, e.g. "12.34".')
        value = super().to_internal_value(data)
        if value.startswith("-") and AMOUNT_FORMAT.fullmatch(value[1:]):
            raise serializers.ValidationError("Must be a non-negative decimal number.")
        if not AMOUNT_FORMAT.fullmatch(value):
            raise serializers.ValidationError(
                f'Not a decimal number: {value[:40]!r}. Use digits and a point, e.g. "12.34".'
            )
        try:
            amount = Decimal(value)
        except InvalidOperation:
            raise serializers.ValidationError(f"Not a decimal number: {value[:40]!r}.") from None
        if abs(amount) >= MAX_AMOUNT:
            raise serializers.ValidationError(f"Must be less than {MAX_AMOUNT:f}.")
        return value


class TimestampField(StrictCharField):
    """An ISO 8601 timestamp that must carry a UTC offset and exist in UTC."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            parsed = parse_datetime(value) if value else None
        except ValueError:
            # Well formed but impossible: February 30th, an offset of +25:00.
            raise serializers.ValidationError(
                f"Not a real date and time: {value[:40]!r}."
            ) from None
        if parsed is None or parsed.tzinfo is None:
            raise serializers.ValidationError(
                "Use an ISO 8601 timestamp with a UTC offset, e.g. 2024-11-18T10:24:05-08:00."
            )
        try:
            parsed.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00:00+14:00 lies before the first moment a timestamp can hold.
            raise serializers.ValidationError(
                f"Out of range once converted to UTC: {value[:40]!r}."
            ) from None
        return value


class CanonicalCustomerSerializer(ExactFieldsMixin, serializers.Serializer):
    name = DisplayTextField(max_length=300, allow_blank=True)
    # The limit of the column the adapter stores it in (orders.canonical.TEXT_LIMITS).
    email = serializers.EmailField(allow_blank=True, max_length=254)
    id = StrictCharField(max_length=100, allow_blank=True, required=False)


class CanonicalAddressSerializer(ExactFieldsMixin, serializers.Serializer):
    # 255: the longest address field the adapter stores (orders.canonical.MAX_ADDRESS_FIELD).
    name = DisplayTextField(max_length=255, allow_blank=True)
    address1 = DisplayTextField(max_length=255)
    address2 = DisplayTextField(max_length=255, allow_blank=True, allow_null=True)
    city = DisplayTextField(max_length=200)
    region = DisplayTextField(max_length=100, allow_blank=True)
    postal_code = DisplayTextField(max_length=32, allow_blank=True)
    country_code = serializers.RegexField(
        r"^[A-Z]{2}$", error_messages={"invalid": "Use an ISO 3166-1 alpha-2 code, e.g. US."}
    )
    phone = DisplayTextField(max_length=64, allow_blank=True, allow_null=True)


class CanonicalShippingSerializer(ExactFieldsMixin, serializers.Serializer):
    carrier_code = StrictCharField(max_length=200, allow_blank=True)
    method = StrictCharField(max_length=200, allow_blank=True)
    amount = AmountField()


class CanonicalExternalIdSerializer(ExactFieldsMixin, serializers.Serializer):
    id_kind = serializers.ChoiceField(choices=[ExternalIdKind.SKU.value])
    id = StrictCharField(max_length=200)


class CanonicalLineSerializer(ExactFieldsMixin, serializers.Serializer):
    sku = StrictCharField(max_length=64, required=False)
    external = CanonicalExternalIdSerializer(required=False)
    title = StrictCharField(max_length=500)
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)
    unit_price = AmountField()

    def validate(self, attrs):
        if ("sku" in attrs) == ("external" in attrs):
            raise serializers.ValidationError("A line needs exactly one of sku and external.")
        return attrs


class CanonicalOrderInputSerializer(ExactFieldsMixin, serializers.Serializer):
    channel = StrictCharField(max_length=50)
    channel_order_id = StrictCharField(max_length=100)
    order_number = StrictCharField(max_length=100, allow_blank=True)
    # Untrimmed: the adapter reads the body as sent, so "EUR " must fail here, not there.
    currency = StrictCharField(max_length=3, trim_whitespace=False)
    placed_at = TimestampField()
    updated_at = TimestampField(required=False)
    state = serializers.ChoiceField(choices=["open", "cancelled", "incomplete"], required=False)
    in_store_pickup = StrictBooleanField(required=False)
    customer = CanonicalCustomerSerializer()
    shipping_address = CanonicalAddressSerializer(allow_null=True)
    billing_address = CanonicalAddressSerializer(allow_null=True)
    shipping = CanonicalShippingSerializer()
    lines = CanonicalLineSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_LINES,
        error_messages={"max_length": f"At most {MAX_LINES} lines per order; split larger ones."},
    )
    subtotal = AmountField()
    shipping_total = AmountField()
    tax_total = AmountField()
    discount_total = AmountField()
    total = AmountField()
    tags = serializers.ListField(child=StrictCharField(max_length=100), max_length=50)

    def validate_currency(self, value: str) -> str:
        if not is_currency(value):
            raise serializers.ValidationError(f"Not an ISO 4217 currency code: {value!r}.")
        return value

    def validate(self, attrs):
        # Amounts carry exactly the currency's minor unit, so "12.3" for USD is a typo.
        digits = minor_units(attrs["currency"])
        errors = {}
        for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total"):
            if _decimal_places(attrs[name]) != digits:
                errors[name] = [f"Use exactly {digits} decimal places for {attrs['currency']}."]
        if _decimal_places(attrs["shipping"]["amount"]) != digits:
            errors["shipping.amount"] = [
                f"Use exactly {digits} decimal places for {attrs['currency']}."
            ]
        for index, line in enumerate(attrs["lines"]):
            if _decimal_places(line["unit_price"]) != digits:
                errors[f"lines[{index}].unit_price"] = [
                    f"Use exactly {digits} decimal places for {attrs['currency']}."
                ]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _decimal_places(value: str) -> int:
    exponent = Decimal(value).as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0
