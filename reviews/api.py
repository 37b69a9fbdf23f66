import django_filters
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from omsguard.api_filters import IdFilter, MultipleChoiceFilter
from orders.channel_access import channel_scoped_any

from . import services
from .models import ReviewItem, ReviewKind, ReviewStatus
from .serializers import (
    AcceptInputSerializer,
    RejectInputSerializer,
    ReviewItemSerializer,
    ReviseInputSerializer,
)


class ReviewItemFilter(django_filters.FilterSet):
    """Filters of GET /api/v1/review-items/; a repeated `status` or `kind` keeps any of them."""

    status = MultipleChoiceFilter(choices=ReviewStatus.choices)
    kind = MultipleChoiceFilter(choices=ReviewKind.choices)
    channel = django_filters.CharFilter(method="filter_channel")
    # Declared because django-filter derives a ModelChoiceFilter from the foreign key, and its
    # error ("Select a valid choice.") does not say that an order id is expected. An id that
    # names no order, or an order of another channel, matches no items (200).
    order = IdFilter(field_name="order_id", help_text="The order's id.")

    class Meta:
        model = ReviewItem
        fields = ["status", "kind", "channel", "order"]

    def filter_channel(
        self, queryset: QuerySet[ReviewItem], name: str, value: str
    ) -> QuerySet[ReviewItem]:
        # The same channel the serializer shows: the order's, else the delivery's, else the one
        # a known-answer item's case copied.
        return queryset.filter(
            Q(order__channel__code=value)
            | Q(order__isnull=True, delivery__channel__code=value)
            | Q(order__isnull=True, delivery__isnull=True, source_data__order__channel=value)
        )


# The service returns 409 for an item decided already or claimed by another agent.
DECIDE_RESPONSES = {
    200: ReviewItemSerializer,
    409: OpenApiResponse(description="The item is decided already, or claimed by someone else."),
}


class ReviewItemViewSet(viewsets.ReadOnlyModelViewSet):
    """Exception queue items; accepting or rejecting needs the decide permission."""

    serializer_class = ReviewItemSerializer
    filterset_class = ReviewItemFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at"]
    ordering = ["created_at"]

    def get_permissions(self):
        # Deciding is checked by the service against reviews.decide_reviewitem.
        if self.action in ("accept", "reject", "revise", "claim", "release"):
            return [permissions.IsAuthenticated()]
        return super().get_permissions()

    def get_queryset(self):
        items = ReviewItem.objects.select_related(
            "order", "order__channel", "delivery__channel", "decided_by"
        )
        # An integration reads only the items of orders or deliveries of its granted channels.
        return channel_scoped_any(
            items, self.request.user, via=("order__channel", "delivery__channel")
        )

    @extend_schema(request=AcceptInputSerializer, responses=DECIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str | None = None) -> Response:
        data = _validated(AcceptInputSerializer, request)
        return self._decide(
            lambda: services.review_item_accept(
                item_id=int(pk),
                user=request.user,
                note=data["note"],
                **{name: data[name] for name in ("sku_id", "service_id") if name in data},
            )
        )

    @extend_schema(request=RejectInputSerializer, responses=DECIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        data = _validated(RejectInputSerializer, request)
        return self._decide(
            lambda: services.review_item_reject(
                item_id=int(pk), user=request.user, note=data["note"]
            )
        )

    @extend_schema(request=ReviseInputSerializer, responses=DECIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def revise(self, request: Request, pk: str | None = None) -> Response:
        data = _validated(ReviseInputSerializer, request)
        return self._decide(
            lambda: services.review_item_revise(
                item_id=int(pk), user=request.user, revision=data["revision"], note=data["note"]
            )
        )

    @extend_schema(request=None, responses=DECIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def claim(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(lambda: services.review_item_claim(item_id=int(pk), user=request.user))

    @extend_schema(request=None, responses=DECIDE_RESPONSES)
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str | None = None) -> Response:
        return self._decide(
            lambda: services.review_item_release(item_id=int(pk), user=request.user)
        )

    def _decide(self, decide) -> Response:
        try:
            item = decide()
        except services.ReviewError as error:
            raise _api_error(error) from None
        item = self.get_queryset().get(pk=item.pk)
        return Response(ReviewItemSerializer(item).data)


def _validated(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _api_error(error: services.ReviewError) -> exceptions.APIException:
    if error.field and error.status == 400:
        # A bad revision: name the field at fault, keep the service's code.
        invalid = exceptions.ValidationError({error.field: [error.message]})
        invalid.default_code = error.code
        return invalid
    exception = exceptions.APIException(detail=error.message, code=error.code)
    exception.status_code = error.status
    return exception
