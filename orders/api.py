import hashlib
import json
import logging

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, status, viewsets
from rest_framework import serializers as drf_serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Channel, ChannelKind
from omsguard.api_filters import IsoDateTimeFilter, MultipleChoiceFilter
from omsguard.api_parsers import nul_fields
from omsguard.api_schema import idempotency_key_parameter

from . import selectors
from .canonical import AdapterError
from .channel_access import ANY_CHANNEL_PERMISSION, CHANNEL_NOT_ALLOWED, channel_scoped
from .channel_ingest import FILE_KINDS, channel_file_ingest
from .models import ChannelApiGrant, Delivery, DeliveryOutcome, Order, OrderStatus
from .serializers import CanonicalOrderInputSerializer, DeliverySerializer, OrderSerializer
from .services import (
    IDEMPOTENCY_IN_PROGRESS,
    IdempotencyKeyTaken,
    canonical_order_record,
    idempotency_key_complete,
)

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_LENGTH = 150


class OrderFilter(django_filters.FilterSet):
    """Filters of GET /api/v1/orders/; a repeated `status` keeps orders in any of them."""

    status = MultipleChoiceFilter(choices=OrderStatus.choices)
    channel = django_filters.CharFilter(field_name="channel__code")
    channel_order_id = django_filters.CharFilter()
    # ISO 4217 code, in any case: ordering by total only makes sense within one currency.
    currency = django_filters.CharFilter(lookup_expr="iexact")
    created_after = IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = [
            "status",
            "channel",
            "channel_order_id",
            "currency",
            "created_after",
            "created_before",
        ]


class DeliveryFilter(django_filters.FilterSet):
    """Filters of GET /api/v1/deliveries/, named like the other lists' filters.

    `channel` takes a channel code, and the received_at range is `received_after` (inclusive)
    and `received_before` (exclusive), as on the shipments and returns lists. A repeated
    `outcome` keeps deliveries with any of the outcomes.
    """

    outcome = MultipleChoiceFilter(choices=DeliveryOutcome.choices)
    channel = django_filters.CharFilter(field_name="channel__code")
    delivery_id = django_filters.CharFilter(
        help_text="The channel's own id of the delivery, such as Shopify's webhook id."
    )
    topic = django_filters.CharFilter()
    received_after = IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = [
            "outcome",
            "channel",
            "delivery_id",
            "topic",
            "received_after",
            "received_before",
        ]


ORDER_RECORDED = inline_serializer(
    "CanonicalOrderRecorded",
    {
        "delivery": drf_serializers.IntegerField(help_text="The delivery's id."),
        "outcome": drf_serializers.CharField(help_text="The delivery's processing outcome."),
        "error": drf_serializers.CharField(help_text="Why processing failed; empty if not."),
        "order": drf_serializers.IntegerField(allow_null=True),
        "status": drf_serializers.CharField(allow_null=True, help_text="The order's status."),
    },
)
ORDER_ACCEPTED = inline_serializer(
    "CanonicalOrderAccepted",
    {
        "delivery": drf_serializers.IntegerField(help_text="The delivery's id."),
        "outcome": drf_serializers.CharField(help_text="received: not processed yet."),
        "location": drf_serializers.CharField(help_text="The delivery's URL, to poll."),
    },
)


def _error(status_code: int, code: str, message: str, fields: dict | None = None) -> Response:
    return Response(
        {"error": {"code": code, "message": message, "fields": fields or {}}}, status=status_code
    )


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Canonical orders with their lines and provenance; POST records a canonical order."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at", "total"]
    ordering = ["-created_at"]

    def get_queryset(self):
        # An integration reads only the orders of its granted channels; others are not found.
        return channel_scoped(selectors.order_list(), self.request.user)

    @extend_schema(
        request={"application/json": CanonicalOrderInputSerializer},
        parameters=[
            idempotency_key_parameter(
                required=True,
                max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
                description=(
                    "Required. A retry with the same key and body gets the first response "
                    "again; the same key with another body gets 409."
                ),
            )
        ],
        responses={
            201: OpenApiResponse(ORDER_RECORDED, "Recorded and processed at once."),
            202: OpenApiResponse(ORDER_ACCEPTED, "Recorded; poll `location` for the outcome."),
            409: OpenApiResponse(
                description="The key was used with another body, or its first request runs."
            ),
        },
    )
    def create(self, request: Request) -> Response:
        """Record a canonical order (samples/canonical/README.md) once per Idempotency-Key."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return _error(400, "missing_idempotency_key", "The Idempotency-Key header is required.")
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
            return _error(
                400,
                "invalid_idempotency_key",
                f"Idempotency-Key must be printable and at most {MAX_IDEMPOTENCY_KEY_LENGTH} "
                "characters.",
            )
        content_type = request.content_type.split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(
                415, "unsupported_media_type", "Send the order as Content-Type application/json."
            )
        limit = settings.OMSGUARD_API_ORDER_MAX_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            return _error(413, "too_large", f"Request body is larger than {limit} bytes.")
        body = request.body
        if len(body) > limit:
            return _error(413, "too_large", f"Request body is larger than {limit} bytes.")

        request_sha256 = hashlib.sha256(body).hexdigest()
        replay = self._replay(request, key=key, request_sha256=request_sha256)
        if replay is not None:
            return replay

        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as error:
            # ValueError covers invalid UTF-8, invalid JSON and integers of more than 4,300
            # digits, which Python refuses to convert.
            return _error(400, "malformed_json", f"The body is not valid JSON: {error}.")
        # The raw payload is stored with the order, and PostgreSQL cannot store NUL in jsonb.
        nul_errors = nul_fields(payload)
        if nul_errors:
            return _error(400, "invalid", "Invalid input.", nul_errors)
        serializer = CanonicalOrderInputSerializer(data=payload)
        if not serializer.is_valid():
            return _error(400, "invalid", "Invalid input.", _flatten_errors(serializer.errors))

        channel = Channel.objects.filter(
            kind=ChannelKind.CANONICAL, code=serializer.validated_data["channel"], is_active=True
        ).first()
        if channel is None:
            return _error(
                400,
                "invalid",
                "Invalid input.",
                {"channel": ["No active channel of kind canonical with this code."]},
            )
        if not _may_post_for(request.user, channel):
            return _error(
                403,
                CHANNEL_NOT_ALLOWED,
                f"This user may not post orders for channel {channel.code!r}.",
            )

        try:
            delivery = canonical_order_record(
                user=request.user,
                channel=channel,
                key=key,
                request_sha256=request_sha256,
                body=body,
            )
        except IdempotencyKeyTaken as taken:
            return self._replay_row(taken.existing, request_sha256=request_sha256)

        response = _delivery_response(delivery)
        idempotency_key_complete(
            user=request.user, key=key, status=response.status_code, body=response.data
        )
        return response

    def _replay(self, request: Request, *, key: str, request_sha256: str) -> Response | None:
        existing = request.user.idempotency_keys.filter(key=key).first()
        if existing is None:
            return None
        return self._replay_row(existing, request_sha256=request_sha256)

    def _replay_row(self, existing, *, request_sha256: str) -> Response:
        if existing.request_sha256 != request_sha256:
            return _error(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different body; use a new key.",
            )
        if existing.response_status == IDEMPOTENCY_IN_PROGRESS:
            return _error(
                409,
                "idempotency_request_in_progress",
                "The first request with this Idempotency-Key is still running; retry shortly.",
            )
        response = Response(existing.response_body, status=existing.response_status)
        if "location" in existing.response_body:
            response["Location"] = existing.response_body["location"]
        return response


def _delivery_response(delivery: Delivery) -> Response:
    """201 with the outcome when processing already ran (eager), else 202 with a poll URL."""
    delivery.refresh_from_db()
    location = reverse("delivery-detail", kwargs={"pk": delivery.pk})
    if delivery.outcome == DeliveryOutcome.RECEIVED:
        body = {"delivery": delivery.pk, "outcome": delivery.outcome, "location": location}
        response = Response(body, status=status.HTTP_202_ACCEPTED)
        response["Location"] = location
        return response
    order = delivery.orders.first() or _order_of(delivery)
    body = {
        "delivery": delivery.pk,
        "outcome": delivery.outcome,
        "error": delivery.error,
        "order": order.pk if order else None,
        "status": order.status if order else None,
    }
    return Response(body, status=status.HTTP_201_CREATED)


def _order_of(delivery: Delivery) -> Order | None:
    """The order an update delivery applied to (the order keeps its first delivery)."""
    try:
        payload = json.loads(bytes(delivery.body))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return Order.objects.filter(
        channel=delivery.channel_id, channel_order_id=str(payload.get("channel_order_id", ""))
    ).first()


def _may_post_for(user, channel: Channel) -> bool:
    if user.has_perm(ANY_CHANNEL_PERMISSION):
        return True
    return ChannelApiGrant.objects.filter(user=user, channel=channel).exists()


def _flatten_errors(errors, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as {"lines[0].quantity": [...]}, the field names clients send."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for name, value in errors.items():
            if isinstance(name, int):
                path = f"{prefix}[{name}]"
            elif name == "non_field_errors":
                path = prefix or "body"
            elif name.startswith("lines["):
                path = name
            else:
                path = f"{prefix}.{name}" if prefix else name
            flat.update(_flatten_errors(value, path))
    elif isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        flat[prefix] = [str(error) for error in errors]
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            if value:
                flat.update(_flatten_errors(value, f"{prefix}[{index}]"))
    return flat


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Recorded deliveries and their processing outcome, to poll after a 202."""

    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    lookup_value_regex = r"\d+"
    ordering = ["-received_at"]
    ordering_fields = ["received_at"]

    def get_queryset(self) -> QuerySet[Delivery]:
        deliveries = Delivery.objects.select_related("channel").prefetch_related("orders")
        if getattr(self, "swagger_fake_view", False):
            return deliveries.none()
        # Only an integration is limited to its granted channels, as on the orders list.
        return channel_scoped(deliveries, self.request.user)


class MarketplaceOrderIngestView(APIView):
    """Record Amazon SP-API or eBay Fulfillment API orders sent by a connector.

    The body is what `manage.py ingest_file` reads from a file: one order, a list, or an API
    response page. Each order becomes one delivery (id: order id plus last-update time), so
    sending the same orders again records nothing new. Processing follows as for webhooks.
    """

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            202: inline_serializer(
                "MarketplaceIngestResult",
                {
                    "deliveries": inline_serializer(
                        "MarketplaceIngestDelivery",
                        {
                            "delivery_id": drf_serializers.CharField(),
                            "delivery": drf_serializers.IntegerField(),
                            "created": drf_serializers.BooleanField(),
                        },
                        many=True,
                    )
                },
            )
        },
    )
    def post(self, request: Request, channel_code: str) -> Response:
        channel = Channel.objects.filter(code=channel_code, is_active=True).first()
        if channel is None:
            return _error(404, "unknown_channel", f"No active channel {channel_code!r}.")
        if not request.user.has_perm("orders.add_order"):
            return _error(403, "forbidden", f"You may not post orders for channel {channel.code}.")
        if not _may_post_for(request.user, channel):
            return _error(
                403,
                CHANNEL_NOT_ALLOWED,
                f"This user may not post orders for channel {channel.code!r}.",
            )
        if channel.kind not in FILE_KINDS:
            return _error(
                400,
                "unsupported_channel_kind",
                f"Channel {channel.code} is a {channel.kind} channel; this endpoint takes "
                "amazon and ebay orders.",
            )

        try:
            results = channel_file_ingest(
                channel=channel, data=request.data, source=f"api:{request.user.get_username()}"
            )
        except AdapterError as error:
            return _error(400, "invalid_payload", str(error), {error.field: [error.reason]})

        return Response(
            {
                "deliveries": [
                    {"delivery_id": r.delivery_id, "delivery": r.delivery, "created": r.created}
                    for r in results
                ]
            },
            status=status.HTTP_202_ACCEPTED,
        )
