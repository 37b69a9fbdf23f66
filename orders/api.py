import django_filters
from rest_framework import viewsets

from . import selectors
from .models import Order, OrderStatus
from .serializers import OrderSerializer


class OrderFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    channel = django_filters.CharFilter(field_name="channel__code")
    channel_order_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ["status", "channel", "channel_order_id", "created_after", "created_before"]


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Canonical orders with their lines and provenance."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    lookup_value_regex = r"\d+"
    ordering_fields = ["created_at", "total"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return selectors.order_list()
