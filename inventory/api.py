"""REST API for stock: posting stock events, reading stock levels, recording counts."""

import django_filters
from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.api_filters import MultipleChoiceFilter
from omsguard.api_parsers import JSONParser

from . import selectors, services
from .models import InventoryDiscrepancy, StockEvent, StockEventOutcome, StockLevel
from .serializers import (
    DiscrepancyInputSerializer,
    DiscrepancySerializer,
    StockEventBatchResultSerializer,
    StockEventInputSerializer,
    StockEventResultSerializer,
    StockEventSerializer,
    StockLevelSerializer,
)

STOCK_EVENT_REQUEST = PolymorphicProxySerializer(
    component_name="StockEvents",
    serializers=[StockEventInputSerializer, StockEventInputSerializer(many=True)],
    resource_type_field_name=None,
    many=False,
)
STOCK_EVENT_OK = PolymorphicProxySerializer(
    component_name="StockEventReplayOrBatch",
    serializers=[StockEventResultSerializer, StockEventBatchResultSerializer],
    resource_type_field_name=None,
    many=False,
)


class StockEventConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = services.StockEventConflict.code


class StockEventFilter(django_filters.FilterSet):
    source = django_filters.CharFilter()
    sku = django_filters.CharFilter(field_name="sku__code")
    location = django_filters.CharFilter(field_name="location__code")
    outcome = MultipleChoiceFilter(choices=StockEventOutcome.choices)

    class Meta:
        model = StockEvent
        fields = ["source", "sku", "location", "outcome"]


class StockEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Stock events. Posting needs inventory.add_stockevent, listing view_stockevent."""

    serializer_class = StockEventSerializer
    filterset_class = StockEventFilter
    parser_classes = [JSONParser]
    ordering_fields = ["received_at"]
    ordering = ["-received_at"]

    def get_queryset(self):
        return StockEvent.objects.select_related("sku", "location")

    @extend_schema(
        request=STOCK_EVENT_REQUEST,
        responses={
            201: OpenApiResponse(StockEventResultSerializer, "One new event, recorded."),
            200: OpenApiResponse(
                STOCK_EVENT_OK, "A replayed event (outcome 'duplicate'), or a list's results."
            ),
            409: OpenApiResponse(description="An event id reused for a different change."),
        },
    )
    def create(self, request: Request) -> Response:
        """Record one stock event (an object) or several (a list, applied in order).

        Every event is recorded with its outcome: applied, stale (version not newer than the
        applied one) or rejected (it would make stock negative or fall below what is
        reserved). Resending an event id returns the first result with outcome 'duplicate'.
        """
        if isinstance(request.data, list):
            events = _validated_batch(request.data)
            results = [self._record(data, index=index) for index, data in enumerate(events)]
            body = StockEventBatchResultSerializer({"results": results}).data
            return Response(body, status=status.HTTP_200_OK)

        if not isinstance(request.data, dict):
            raise exceptions.ValidationError("Send one stock event object or a list of them.")
        serializer = StockEventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = self._record(serializer.validated_data, index=None)
        code = status.HTTP_200_OK if result.duplicate else status.HTTP_201_CREATED
        return Response(StockEventResultSerializer(result).data, status=code)

    def _record(self, data: dict, *, index: int | None) -> services.StockEventResult:
        try:
            return services.stock_event_record(
                data=services.StockEventInput(**data), posted_by=self.request.user
            )
        except services.StockEventConflict as conflict:
            prefix = f"Event {index}: " if index is not None else ""
            raise StockEventConflictError(f"{prefix}{conflict}") from None


class StockLevelFilter(django_filters.FilterSet):
    sku = django_filters.CharFilter(field_name="sku__code")
    location = django_filters.CharFilter(field_name="location__code")

    class Meta:
        model = StockLevel
        fields = ["sku", "location"]


class StockLevelViewSet(viewsets.ReadOnlyModelViewSet):
    """Stock per SKU and location, with availability and snapshot staleness."""

    serializer_class = StockLevelSerializer
    filterset_class = StockLevelFilter
    ordering_fields = ["updated_at", "counted_at"]

    def get_queryset(self):
        return selectors.stock_level_list()


class DiscrepancyViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Counted stock against the stock held; posting may correct on hand to the count."""

    serializer_class = DiscrepancySerializer
    parser_classes = [JSONParser]
    ordering = ["-created_at"]
    ordering_fields = ["created_at"]

    def get_queryset(self):
        return InventoryDiscrepancy.objects.select_related(
            "sku", "location", "reported_by", "correction__sku", "correction__location"
        )

    @extend_schema(request=DiscrepancyInputSerializer, responses={201: DiscrepancySerializer})
    def create(self, request: Request) -> Response:
        serializer = DiscrepancyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        discrepancy = services.discrepancy_record(
            reported_by=request.user, **serializer.validated_data
        )
        discrepancy = self.get_queryset().get(pk=discrepancy.pk)
        return Response(DiscrepancySerializer(discrepancy).data, status=status.HTTP_201_CREATED)


def _validated_batch(items: list) -> list[dict]:
    """Validate every event before any is applied; errors name the event's index."""
    limit = settings.OMSGUARD_STOCK_EVENTS_MAX_BATCH
    if not items:
        raise exceptions.ValidationError("The list of stock events is empty.")
    if len(items) > limit:
        raise exceptions.ValidationError(
            f"A list may contain at most {limit} stock events, got {len(items)}. "
            "Split it into smaller lists."
        )

    validated, errors = [], {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors[str(index)] = ["A stock event object is required."]
            continue
        serializer = StockEventInputSerializer(data=item)
        if serializer.is_valid():
            validated.append(serializer.validated_data)
            continue
        for name, messages in serializer.errors.items():
            errors[f"{index}.{name}"] = messages
    if errors:
        raise exceptions.ValidationError(errors)
    return validated
