"""The review queue's filters and sorting, as a django-filter FilterSet over open items.

Bad parameters never raise: the form reports them and `review_queue_items` falls back to the
unfiltered queue.
"""

from datetime import timedelta
from decimal import Decimal

import django_filters
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from .models import ReviewItem, ReviewKind

SORT_CHOICES = [
    ("oldest", "Oldest first"),
    ("newest", "Newest first"),
    ("due", "Deadline first"),
    ("confidence", "Lowest confidence first"),
]
SORT_ORDERINGS = {
    "oldest": [F("created_at").asc(), F("id").asc()],
    "newest": [F("created_at").desc(), F("id").desc()],
    "due": [F("due_at").asc(nulls_last=True), F("created_at").asc(), F("id").asc()],
    "confidence": [F("confidence").asc(nulls_last=True), F("created_at").asc(), F("id").asc()],
}
DEFAULT_SORT = "oldest"


class ReviewItemQueueFilter(django_filters.FilterSet):
    """Filters of the queue page; pass the viewing user for `assignee=me`.

    `assignee` is "me", "none" or a user name, and counts live claims only: a claim that ran
    out leaves the item unassigned.
    """

    kind = django_filters.ChoiceFilter(choices=ReviewKind.choices)
    channel = django_filters.CharFilter(
        method="filter_channel", max_length=100, label="Channel code"
    )
    action = django_filters.CharFilter(field_name="action_code", max_length=64)
    confidence_min = django_filters.NumberFilter(
        field_name="confidence",
        lookup_expr="gte",
        min_value=Decimal("0"),
        max_value=Decimal("1"),
    )
    confidence_max = django_filters.NumberFilter(
        field_name="confidence",
        lookup_expr="lte",
        min_value=Decimal("0"),
        max_value=Decimal("1"),
    )
    older_than = django_filters.NumberFilter(
        method="filter_older_than",
        label="Older than (minutes)",
        min_value=0,
        max_value=60 * 24 * 365,
        decimal_places=0,
        help_text="Minutes since the item opened.",
    )
    assignee = django_filters.CharFilter(
        method="filter_assignee", max_length=150, label="Claimed by (me, none or a user name)"
    )
    sort = django_filters.ChoiceFilter(
        choices=SORT_CHOICES, method="filter_sort", empty_label=None, label="Sort by"
    )

    class Meta:
        model = ReviewItem
        fields = ["kind", "channel", "action", "confidence_min", "confidence_max"]

    def __init__(self, data=None, queryset=None, *, user=None, **kwargs) -> None:
        super().__init__(data, queryset, **kwargs)
        self.user = user

    def filter_channel(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # An unprocessable delivery's item has no order, but its delivery names the channel.
        return queryset.filter(Q(order__channel__code=value) | Q(delivery__channel__code=value))

    def filter_older_than(self, queryset: QuerySet, name: str, value: Decimal) -> QuerySet:
        return queryset.filter(created_at__lte=timezone.now() - timedelta(minutes=int(value)))

    def filter_assignee(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        live = Q(claimed_until__gt=timezone.now())
        if value == "none":
            return queryset.filter(Q(assignee__isnull=True) | ~live)
        if value == "me":
            if self.user is None or not self.user.is_authenticated:
                return queryset.none()
            return queryset.filter(live, assignee=self.user)
        return queryset.filter(live, assignee__username=value)

    def filter_sort(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Sorting is applied last, in filter_queryset, so other filters cannot reorder it.
        return queryset

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        return queryset.order_by(*SORT_ORDERINGS[self.sort_value])

    @property
    def sort_value(self) -> str:
        """The valid sort of the request, else the default."""
        cleaned = getattr(self.form, "cleaned_data", {}) if self.is_bound else {}
        value = cleaned.get("sort") or DEFAULT_SORT
        return value if value in SORT_ORDERINGS else DEFAULT_SORT
