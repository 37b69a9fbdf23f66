"""REST API for the facts after an order ships: shipments and their status, fulfilment
exceptions, returns and chargebacks.

Posting needs the model's add permission. An integration also needs a ChannelApiGrant for the
order's channel, while staff and users who may ingest for any channel post for every channel.
Reading is scoped the same way. The services in orders.fulfilment hold the rules.
"""

import hashlib
import json
import logging
from collections.abc import Callable

import django_filters
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet, TextChoices
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from catalog.models import MAX_INTEGER, Channel
from omsguard.api_filters import BooleanFilter, IdFilter, IsoDateTimeFilter, MultipleChoiceFilter
from omsguard.api_parsers import JSONParser
from omsguard.api_schema import idempotency_key_parameter
from omsguard.money import money_format

from . import fulfilment
from .api import ANY_CHANNEL_PERMISSION, MAX_IDEMPOTENCY_KEY_LENGTH, _flatten_errors
from .models import (
    ChannelApiGrant,
    Chargeback,
    FulfilmentException,
    FulfilmentExceptionReason,
    FulfilmentStage,
    IdempotencyKey,
    Order,
    OrderReturn,
    ReturnAttribution,
    ReturnReason,
    Shipment,
    ShipmentStatus,
)
from .services import IDEMPOTENCY_IN_PROGRESS, IdempotencyKeyTaken

logger = logging.getLogger(__name__)

MAX_ID = 2**63 - 1
MAX_LINES = 500
MAX_EXCEPTIONS = 50
MAX_NOTE_LENGTH = 2000


# --- Input ---------------------------------------------------------------------------------


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 date and time that must carry its timezone offset."""

    def enforce_timezone(self, value):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationError(
                "Give the time with its timezone offset, e.g. 2024-11-04T15:20:00Z.",
                code="naive_datetime",
            )
        return super().enforce_timezone(value)


def _enum_field_class(choices: type[TextChoices]) -> type[serializers.ChoiceField]:
    """Return a ChoiceField class whose schema is its own component, named after `choices`.

    Exceptions and returns both have a `reason` field with different codes, and
    drf-spectacular would otherwise name their enums by a hash of the choices.
    """
    lines = "\n".join(f"* `{value}` - {label}" for value, label in choices.choices)
    schema = {"type": "string", "enum": list(choices.values), "description": lines}
    field_class = type(f"{choices.__name__}Field", (serializers.ChoiceField,), {})
    return extend_schema_field(schema, component_name=f"{choices.__name__}Enum")(field_class)


ReturnReasonField = _enum_field_class(ReturnReason)
FulfilmentExceptionReasonField = _enum_field_class(FulfilmentExceptionReason)


def _choice_field(
    choices: list[tuple[str, str]],
    name: str,
    field_class: type[serializers.ChoiceField] = serializers.ChoiceField,
    **kwargs,
) -> serializers.ChoiceField:
    codes = ", ".join(code for code, _ in choices)
    return field_class(
        choices=choices,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a valid {name}; use one of: {codes}.'
        },
        **kwargs,
    )


class SkuLineSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=64, help_text="The canonical SKU code.")
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_INTEGER)


class OrderReferenceSerializer(serializers.Serializer):
    """The order, by OMS Guard id or by channel code and the channel's order id."""

    order = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="OMS Guard's order id."
    )
    channel = serializers.CharField(required=False, max_length=64, help_text="Channel code.")
    channel_order_id = serializers.CharField(
        required=False, max_length=100, help_text="The channel's own order id."
    )

    def validate(self, data: dict) -> dict:
        if "order" in data:
            if "channel" in data or "channel_order_id" in data:
                message = "Give either order, or channel and channel_order_id, not both."
                raise ValidationError({"order": [message]})
            return data
        missing = [name for name in ("channel", "channel_order_id") if name not in data]
        if missing:
            message = "Required, unless the order is given by its OMS Guard id (order)."
            raise ValidationError({name: [message] for name in missing})
        return data


class ShipmentExceptionInputSerializer(serializers.Serializer):
    stage = _choice_field(FulfilmentStage.choices, "stage")
    reason = _choice_field(
        FulfilmentExceptionReason.choices, "reason", FulfilmentExceptionReasonField
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_NOTE_LENGTH)
    occurred_at = AwareDateTimeField(
        required=False, help_text="When it happened; defaults to the shipment's shipped_at."
    )


class ShipmentInputSerializer(OrderReferenceSerializer):
    """A parcel shipped for an order.

    Name the order by `order`, or by `channel` and `channel_order_id`.
    """

    shipment_id = serializers.CharField(
        max_length=100, help_text="Your own id for the parcel; unique per order."
    )
    carrier_code = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="The carrier or service as you name it, e.g. 'UPS Ground' or 'ups/ground'.",
    )
    tracking_number = serializers.CharField(required=False, allow_blank=True, max_length=100)
    lines = SkuLineSerializer(many=True, required=False, max_length=MAX_LINES)
    shipped_at = AwareDateTimeField(required=False, help_text="Defaults to now.")
    exceptions = ShipmentExceptionInputSerializer(
        many=True,
        required=False,
        max_length=MAX_EXCEPTIONS,
        help_text="Pick, pack or ship mistakes found with this parcel.",
    )


class ShipmentStatusInputSerializer(serializers.Serializer):
    """A shipment's new delivery status."""

    # `status` is required, so the serializer is never partial. The property also keeps
    # drf-spectacular, which marks PATCH bodies partial, from documenting it as optional.
    @property
    def partial(self) -> bool:
        return False

    @partial.setter
    def partial(self, value: bool) -> None:
        pass

    status = _choice_field(
        [choice for choice in ShipmentStatus.choices if choice[0] != ShipmentStatus.SHIPPED],
        "status",
    )
    status_changed_at = AwareDateTimeField(
        required=False, help_text="When the carrier reported it; defaults to now."
    )


class FulfilmentExceptionInputSerializer(OrderReferenceSerializer):
    """A pick, pack or ship mistake on an order.

    Name the order by `order`, or by `channel` and `channel_order_id`.
    """

    shipment_id = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="The parcel, if any."
    )
    stage = _choice_field(FulfilmentStage.choices, "stage")
    reason = _choice_field(
        FulfilmentExceptionReason.choices, "reason", FulfilmentExceptionReasonField
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_NOTE_LENGTH)
    occurred_at = AwareDateTimeField(
        required=False,
        help_text="When it happened; defaults to now. Send it so a retry is recognised.",
    )


class ReturnInputSerializer(OrderReferenceSerializer):
    """A customer return with its reason code.

    Name the order by `order`, or by `channel` and `channel_order_id`.
    """

    return_id = serializers.CharField(
        max_length=100, help_text="Your own id for the return; unique per order."
    )
    reason = _choice_field(ReturnReason.choices, "reason code", ReturnReasonField)
    lines = SkuLineSerializer(
        many=True, required=False, max_length=MAX_LINES, help_text="The SKUs sent back."
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=MAX_NOTE_LENGTH)
    received_at = AwareDateTimeField(required=False, help_text="Defaults to now.")


class ChargebackInputSerializer(OrderReferenceSerializer):
    """A payment dispute on an order.

    Name the order by `order`, or by `channel` and `channel_order_id`.
    """

    chargeback_id = serializers.CharField(
        max_length=100, help_text="The provider's id for the dispute; unique per order."
    )
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=3, help_text='Disputed amount, e.g. "49.99".'
    )
    currency = serializers.CharField(max_length=3, help_text="ISO 4217 code, e.g. USD.")
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="The provider's reason code."
    )
    received_at = AwareDateTimeField(required=False, help_text="Defaults to now.")


# --- Output --------------------------------------------------------------------------------


class _OrderFieldsSerializer(serializers.ModelSerializer):
    channel = serializers.SlugRelatedField(
        slug_field="code", read_only=True, help_text="The order's channel code."
    )
    channel_order_id = serializers.CharField(source="order.channel_order_id", read_only=True)
    order_number = serializers.CharField(source="order.order_number", read_only=True)


class FulfilmentExceptionSerializer(_OrderFieldsSerializer):
    shipment_id = serializers.CharField(
        source="shipment.shipment_id", read_only=True, allow_null=True
    )
    reason = FulfilmentExceptionReasonField(
        choices=FulfilmentExceptionReason.choices, read_only=True
    )

    class Meta:
        model = FulfilmentException
        fields = [
            "id",
            "order",
            "channel",
            "channel_order_id",
            "order_number",
            "shipment",
            "shipment_id",
            "stage",
            "reason",
            "note",
            "occurred_at",
            "created_at",
        ]
        read_only_fields = fields


class ShipmentExceptionSerializer(serializers.ModelSerializer):
    reason = FulfilmentExceptionReasonField(
        choices=FulfilmentExceptionReason.choices, read_only=True
    )

    class Meta:
        model = FulfilmentException
        fields = ["id", "stage", "reason", "note", "occurred_at"]
        read_only_fields = fields


class ShipmentSerializer(_OrderFieldsSerializer):
    carrier_service = serializers.SerializerMethodField(
        help_text='The canonical service as "carrier/service", e.g. "ups/ground"; null when '
        "carrier_code maps to none."
    )
    lines = SkuLineSerializer(many=True, read_only=True)
    exceptions = ShipmentExceptionSerializer(many=True, read_only=True)

    class Meta:
        model = Shipment
        fields = [
            "id",
            "order",
            "channel",
            "channel_order_id",
            "order_number",
            "shipment_id",
            "carrier_code",
            "carrier_service",
            "tracking_number",
            "lines",
            "shipped_at",
            "status",
            "status_changed_at",
            "is_duplicate",
            "duplicate_of",
            "address_corrected",
            "exceptions",
            "created_at",
        ]
        read_only_fields = fields

    def get_carrier_service(self, shipment: Shipment) -> str | None:
        service = shipment.carrier_service
        return f"{service.carrier.code}/{service.code}" if service else None


class OrderReturnSerializer(_OrderFieldsSerializer):
    reason = ReturnReasonField(choices=ReturnReason.choices, read_only=True)
    lines = SkuLineSerializer(many=True, read_only=True)

    class Meta:
        model = OrderReturn
        fields = [
            "id",
            "order",
            "channel",
            "channel_order_id",
            "order_number",
            "return_id",
            "reason",
            "attributed_to",
            "involves_substitution",
            "lines",
            "note",
            "received_at",
            "created_at",
        ]
        read_only_fields = fields


class ChargebackSerializer(_OrderFieldsSerializer):
    amount = serializers.SerializerMethodField(
        help_text='The amount with exactly the currency\'s minor digits, e.g. "49.99".'
    )

    class Meta:
        model = Chargeback
        fields = [
            "id",
            "order",
            "channel",
            "channel_order_id",
            "order_number",
            "chargeback_id",
            "amount",
            "currency",
            "reason",
            "received_at",
            "created_at",
        ]
        read_only_fields = fields

    def get_amount(self, chargeback: Chargeback) -> str:
        return money_format(chargeback.amount, chargeback.currency)


# --- Filters -------------------------------------------------------------------------------


class _FactFilter(django_filters.FilterSet):
    order = IdFilter(field_name="order_id")
    channel = django_filters.CharFilter(field_name="channel__code")
    channel_order_id = django_filters.CharFilter(field_name="order__channel_order_id")


class ShipmentFilter(_FactFilter):
    status = MultipleChoiceFilter(choices=ShipmentStatus.choices)
    shipment_id = django_filters.CharFilter()
    is_duplicate = BooleanFilter()
    shipped_after = IsoDateTimeFilter(field_name="shipped_at", lookup_expr="gte")
    shipped_before = IsoDateTimeFilter(field_name="shipped_at", lookup_expr="lt")

    class Meta:
        model = Shipment
        fields = ["order", "channel", "channel_order_id", "status", "shipment_id", "is_duplicate"]


class FulfilmentExceptionFilter(_FactFilter):
    stage = MultipleChoiceFilter(choices=FulfilmentStage.choices)
    reason = MultipleChoiceFilter(choices=FulfilmentExceptionReason.choices)
    occurred_after = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = FulfilmentException
        fields = ["order", "channel", "channel_order_id", "stage", "reason"]


class _ReceivedFilter(_FactFilter):
    received_after = IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")


class OrderReturnFilter(_ReceivedFilter):
    reason = MultipleChoiceFilter(choices=ReturnReason.choices)
    attributed_to = MultipleChoiceFilter(choices=ReturnAttribution.choices)
    return_id = django_filters.CharFilter()

    class Meta:
        model = OrderReturn
        fields = ["order", "channel", "channel_order_id", "reason", "attributed_to", "return_id"]


class ChargebackFilter(_ReceivedFilter):
    chargeback_id = django_filters.CharFilter()

    class Meta:
        model = Chargeback
        fields = ["order", "channel", "channel_order_id", "chargeback_id"]


# --- Views ---------------------------------------------------------------------------------


IDEMPOTENCY_KEY_PARAMETER = idempotency_key_parameter(
    required=False,
    max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
    description=(
        "Optional. A retry with the same key and body gets the first response again; the "
        "same key with another body gets 409."
    ),
)


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid input; `fields` names the field.",
        401: "No or invalid credentials.",
        403: "Missing permission, or the channel is not granted to this user.",
        404: "No such record visible to this user.",
        409: "The id was recorded with other content, or the status change is not allowed.",
    }
    # The schema hook in omsguard.api_schema gives each of them the API's one error body.
    return {code: OpenApiResponse(description=descriptions[code]) for code in statuses}


def _create_schema(
    input_class: type[serializers.Serializer], output_class: type[serializers.Serializer], what: str
):
    return extend_schema(
        request=input_class,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: OpenApiResponse(output_class, f"The {what}, recorded."),
            200: OpenApiResponse(
                output_class, f"The {what} was recorded before with this content."
            ),
            **_errors(400, 401, 403, 409),
        },
    )


class _FactViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Creates through a service and lists records scoped to the user's channels."""

    parser_classes = [JSONParser]
    ordering = ["-id"]

    def scoped(self, queryset: QuerySet) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return queryset.none()
        user = self.request.user
        if _may_use_any_channel(user):
            return queryset
        return queryset.filter(channel__api_grants__user=user)

    def record(
        self,
        request: Request,
        input_class: type[serializers.Serializer],
        write: Callable[[Order, dict], tuple[object, bool]],
    ) -> Response:
        """Validate, find the order, check its channel, write once, and return 201 or 200."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if key and (len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable()):
            return _error(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be printable and at most {MAX_IDEMPOTENCY_KEY_LENGTH} "
                "characters.",
            )
        replayed = _idempotency_replay(request, key=key)
        if replayed is not None:
            return replayed

        serializer = input_class(data=request.data)
        if not serializer.is_valid():
            return _error(400, "invalid", "Invalid input.", _flatten_errors(serializer.errors))
        data = serializer.validated_data
        try:
            order = fulfilment.fulfilment_order_find(
                order_id=data.get("order"),
                channel_code=data.get("channel", ""),
                channel_order_id=data.get("channel_order_id", ""),
            )
            if not _may_report_for(request.user, order.channel):
                return _error(
                    403,
                    "channel_not_allowed",
                    f"This user may not report for channel {order.channel.code!r}.",
                )
            return self._write_once(request, key=key, write=lambda: write(order, data))
        except fulfilment.FulfilmentError as error:
            return _service_error(error)
        except IdempotencyKeyTaken as taken:
            return _idempotency_response(taken.existing, request)

    def _write_once(
        self, request: Request, *, key: str, write: Callable[[], tuple[object, bool]]
    ) -> Response:
        """Write the record and store its response under the Idempotency-Key in one commit.

        The key row is inserted first, so a concurrent request with the same key waits on
        the unique (user, key) index until this transaction ends. If this one commits, the
        other gets IntegrityError, writes nothing and replays the stored response. If this
        one rolls back, the other goes on with its own write.
        """
        with transaction.atomic():
            stored = _idempotency_key_reserve(request, key=key) if key else None
            record, created = write()
            body = self.get_serializer(self.get_queryset().get(pk=record.pk)).data
            response = Response(
                body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
            )
            if stored is not None:
                stored.response_status = response.status_code
                stored.response_body = response.data
                stored.save(update_fields=["response_status", "response_body"])
        return response

    def _with_relations(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("order", "channel")


class ShipmentViewSet(mixins.RetrieveModelMixin, _FactViewSet):
    """Shipments. Posting needs orders.add_shipment; a status change orders.change_shipment."""

    serializer_class = ShipmentSerializer
    filterset_class = ShipmentFilter
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "patch", "head", "options"]
    ordering_fields = ["shipped_at", "created_at"]
    ordering = ["-shipped_at", "-id"]

    def get_queryset(self) -> QuerySet[Shipment]:
        return self.scoped(self._with_relations(Shipment.objects.all()))

    def _with_relations(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related(
            "order", "channel", "carrier_service__carrier"
        ).prefetch_related(
            Prefetch("exceptions", FulfilmentException.objects.order_by("occurred_at", "pk"))
        )

    @_create_schema(ShipmentInputSerializer, ShipmentSerializer, "shipment")
    def create(self, request: Request) -> Response:
        """Report a parcel shipped for an order, with its lines and any exceptions found."""
        return self.record(
            request,
            ShipmentInputSerializer,
            lambda order, data: fulfilment.shipment_record(
                order=order,
                shipment_id=data["shipment_id"],
                user=request.user,
                lines=[dict(line) for line in data.get("lines", [])],
                carrier_code=data.get("carrier_code", ""),
                tracking_number=data.get("tracking_number", ""),
                shipped_at=data.get("shipped_at"),
                exceptions=[dict(item) for item in data.get("exceptions", [])],
            ),
        )

    @extend_schema(
        request=ShipmentStatusInputSerializer,
        responses={200: ShipmentSerializer, **_errors(400, 401, 403, 404, 409)},
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Report a delivery outcome: delivered, delivery_failed or returned_to_sender."""
        shipment = self.get_object()
        serializer = ShipmentStatusInputSerializer(data=request.data)
        if not serializer.is_valid():
            return _error(400, "invalid", "Invalid input.", _flatten_errors(serializer.errors))
        if not _may_report_for(request.user, shipment.channel):
            return _error(
                403,
                "channel_not_allowed",
                f"This user may not report for channel {shipment.channel.code!r}.",
            )
        try:
            fulfilment.shipment_status_set(
                shipment=shipment,
                status=serializer.validated_data["status"],
                user=request.user,
                changed_at=serializer.validated_data.get("status_changed_at"),
            )
        except fulfilment.FulfilmentError as error:
            return _service_error(error)
        return Response(ShipmentSerializer(self.get_queryset().get(pk=shipment.pk)).data)


class FulfilmentExceptionViewSet(_FactViewSet):
    """Pick, pack and ship mistakes. Posting needs orders.add_fulfilmentexception."""

    serializer_class = FulfilmentExceptionSerializer
    filterset_class = FulfilmentExceptionFilter
    ordering_fields = ["occurred_at", "created_at"]
    ordering = ["-occurred_at", "-id"]

    def get_queryset(self) -> QuerySet[FulfilmentException]:
        return self.scoped(self._with_relations(FulfilmentException.objects.all()))

    def _with_relations(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("order", "channel", "shipment")

    @_create_schema(
        FulfilmentExceptionInputSerializer, FulfilmentExceptionSerializer, "fulfilment exception"
    )
    def create(self, request: Request) -> Response:
        """Report a pick, pack or ship mistake on an order, optionally on one of its parcels."""
        return self.record(
            request,
            FulfilmentExceptionInputSerializer,
            lambda order, data: fulfilment.fulfilment_exception_record(
                order=order,
                stage=data["stage"],
                reason=data["reason"],
                user=request.user,
                note=data.get("note", ""),
                shipment_id=data.get("shipment_id", ""),
                occurred_at=data.get("occurred_at"),
            ),
        )


class OrderReturnViewSet(_FactViewSet):
    """Customer returns with their reason code. Posting needs orders.add_orderreturn."""

    serializer_class = OrderReturnSerializer
    filterset_class = OrderReturnFilter
    ordering_fields = ["received_at", "created_at"]
    ordering = ["-received_at", "-id"]

    def get_queryset(self) -> QuerySet[OrderReturn]:
        return self.scoped(self._with_relations(OrderReturn.objects.all()))

    @_create_schema(ReturnInputSerializer, OrderReturnSerializer, "return")
    def create(self, request: Request) -> Response:
        """Report a customer return; the reason code decides whom it counts against."""
        return self.record(
            request,
            ReturnInputSerializer,
            lambda order, data: fulfilment.return_record(
                order=order,
                return_id=data["return_id"],
                reason=data["reason"],
                user=request.user,
                lines=[dict(line) for line in data.get("lines", [])],
                note=data.get("note", ""),
                received_at=data.get("received_at"),
            ),
        )


class ChargebackViewSet(_FactViewSet):
    """Payment disputes. Posting needs orders.add_chargeback."""

    serializer_class = ChargebackSerializer
    filterset_class = ChargebackFilter
    ordering_fields = ["received_at", "created_at"]
    ordering = ["-received_at", "-id"]

    def get_queryset(self) -> QuerySet[Chargeback]:
        return self.scoped(self._with_relations(Chargeback.objects.all()))

    @_create_schema(ChargebackInputSerializer, ChargebackSerializer, "chargeback")
    def create(self, request: Request) -> Response:
        """Report a chargeback with its amount and currency."""
        return self.record(
            request,
            ChargebackInputSerializer,
            lambda order, data: fulfilment.chargeback_record(
                order=order,
                chargeback_id=data["chargeback_id"],
                amount=data["amount"],
                currency=data["currency"],
                user=request.user,
                reason=data.get("reason", ""),
                received_at=data.get("received_at"),
            ),
        )


# --- Helpers -------------------------------------------------------------------------------


def _may_use_any_channel(user) -> bool:
    return user.is_staff or user.has_perm(ANY_CHANNEL_PERMISSION)


def _may_report_for(user, channel: Channel) -> bool:
    if _may_use_any_channel(user):
        return True
    return ChannelApiGrant.objects.filter(user=user, channel=channel).exists()


def _error(status_code: int, code: str, message: str, fields: dict | None = None) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "fields": fields or {}}}, status=status_code
    )


def _service_error(error: fulfilment.FulfilmentError) -> Response:
    logger.info(
        "fulfilment report rejected",
        extra={"code": str(error.code), "field": error.field, "status": error.status},
    )
    fields = {error.field: [error.message]} if error.field else {}
    return _error(error.status, str(error.code), error.message, fields)


def _idempotency_replay(request: Request, *, key: str) -> Response | None:
    """Return the stored response for a repeated Idempotency-Key, or None to go on.

    This early read saves validating a plain retry again. It does not decide a race between
    concurrent requests with the same key: the unique index does, in _write_once.
    """
    if not key:
        return None
    existing = IdempotencyKey.objects.filter(user=request.user, key=key).first()
    if existing is None:
        return None
    return _idempotency_response(existing, request)


def _idempotency_response(existing: IdempotencyKey, request: Request) -> Response:
    if existing.request_sha256 != _request_sha256(request):
        return _error(
            409,
            "idempotency_key_reused",
            "This Idempotency-Key was used with a different request; use a new key.",
        )
    return Response(existing.response_body, status=existing.response_status)


def _idempotency_key_reserve(request: Request, *, key: str) -> IdempotencyKey:
    """Insert the key row; raise IdempotencyKeyTaken when another request committed it first.

    Call inside the transaction that writes the record. The row contains no response until the
    caller stores it before commit, so no other request ever reads it half done.
    """
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(
                user=request.user,
                key=key,
                request_sha256=_request_sha256(request),
                response_status=IDEMPOTENCY_IN_PROGRESS,
                response_body={},
            )
    except IntegrityError:
        existing = IdempotencyKey.objects.filter(user=request.user, key=key).first()
        if existing is None:
            raise
        logger.info(
            "idempotency key taken by a concurrent request",
            extra={"user": request.user.pk, "idempotency_key": existing.pk},
        )
        raise IdempotencyKeyTaken(existing) from None


def _request_sha256(request: Request) -> str:
    """Hash the method, path and parsed body, so one key cannot be reused across endpoints."""
    body = json.dumps(request.data, sort_keys=True, default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()
