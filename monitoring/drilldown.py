"""The records behind a KPI's number: the orders, decisions, review items and so on of a period.

The lists read the same facts as the rollups (`monitoring.rollups.counter_sources`), with
the same timestamps, channels and dimension values, so a list contains what the KPI counted.
It can differ from the number by what arrived since the last rollup refresh. A counter with
two sources (held orders and failed deliveries, say) gives two lists.

Rows show order numbers, channels, times, amounts and codes. They never show customer
names, emails or addresses, nor free-text notes, which may contain them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    CharField,
    DurationField,
    ExpressionWrapper,
    F,
    Model,
    QuerySet,
    Value,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from guardrails.models import Decision
from inventory.models import InventoryDiscrepancy
from omsguard.databases import reporting_database
from omsguard.money import money_format
from orders.models import (
    Chargeback,
    Delivery,
    FulfilmentException,
    Order,
    OrderEvent,
    OrderReturn,
    Shipment,
)
from reviews.models import ReviewItem, ReviewStatus

from .charts import duration_format
from .kpis import COUNTERS, Kind, Kpi
from .rollups import Source, counter_sources

# Titles of the lists of counters that read two sources of the same model, by source
# position. Other lists are titled by their model, e.g. "Review items" and "Deliveries".
SECTION_TITLES = {
    ("substitutions_resolved", 0): "Substitutions applied as the AI proposed them",
    ("substitutions_resolved", 1): "Substitutions a reviewer rejected or revised",
    ("substitutions_applied", 0): "Substitutions applied as the AI proposed them",
    ("substitutions_applied", 1): "Substitutions applied with a reviewer's revised SKU",
}
# A mean's or percentile's list puts the slowest records first, which sorts every record
# of the period by elapsed time. No index can contain an elapsed time, because its start
# and end often live in different tables. Above this many records (the KPI's count from
# the rollups) the list is newest first instead, which an index on the time serves.
SLOWEST_FIRST_LIMIT = 10_000
# The header of the elapsed column, per counter with a start time.
ELAPSED_HEADERS = {
    "decision_latency": "Delivery to decision",
    "ai_errors_detected": "Time to detect",
    "ai_errors_remediated": "Time to remediate",
    "review_decided": "Time to decide",
}


@dataclass(frozen=True)
class Cell:
    text: str
    url: str = ""


@dataclass(frozen=True)
class Section:
    """One list of records: a title, column headers and how to turn a record into cells."""

    title: str
    headers: tuple[str, ...]
    queryset: QuerySet
    row: Callable[[Any], list[Cell]]


@dataclass(frozen=True)
class Records:
    """The lists behind a KPI, and what they show in a sentence (the counter's definition)."""

    counter: str
    description: str
    sections: list[Section]
    channel_applied: bool  # False when the counter is kept for all channels together
    # True when a mean's or percentile's list is newest first because it is too long to
    # sort by elapsed time (SLOWEST_FIRST_LIMIT).
    newest_first_instead: bool = False


@dataclass(frozen=True)
class _Scope:
    start: datetime
    end: datetime
    channel: str | None
    dimension: str | None
    may_open_admin: Callable[[str], bool]  # (app_label.model) -> the user may open its admin


def drilldown_records(
    kpi: Kpi,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    dimension: str | None = None,
    user: Any = None,
    expected: int | None = None,
) -> Records:
    """List the records behind the KPI's value over [start, end), for a channel and dimension.

    Gauge KPIs (queue size, oldest item) are snapshots, so their list is the review items
    open now, whatever the period. `expected` is how many records the rollups counted. A
    mean's or percentile's list is newest first rather than slowest first when that is
    over SLOWEST_FIRST_LIMIT.
    """
    scope = _Scope(start, end, channel, dimension, _admin_check(user))
    counter = records_counter(kpi)
    if not counter:
        return Records(
            counter="queue_open",
            description="Review items open now, oldest first.",
            sections=[_open_items_section(scope)],
            channel_applied=False,
        )

    sources = counter_sources()[counter]
    per_channel = COUNTERS[counter].per_channel
    slowest_first = kpi.kind in (Kind.MEAN, Kind.PERCENTILE)
    too_many = expected is not None and expected > SLOWEST_FIRST_LIMIT
    sections = []
    for index, source in enumerate(sources):
        queryset = _facts(
            kpi,
            counter,
            source,
            scope,
            per_channel=per_channel,
            slowest_first=slowest_first and not too_many,
        )
        sections.append(_section(counter, index, source, queryset, scope))
    return Records(
        counter=counter,
        description=COUNTERS[counter].source,
        sections=sections,
        channel_applied=per_channel,
        newest_first_instead=slowest_first and too_many,
    )


def records_counter(kpi: Kpi) -> str:
    """Return the counter whose facts the drill-down lists, or "" for gauges, which have none.

    Usually the numerator: the events that raise a rate. For a rate where higher is
    better (substitution acceptance), the denominator, so both outcomes are listed.
    """
    if kpi.kind in (Kind.GAUGE_SUM, Kind.GAUGE_MAX):
        return ""
    if kpi.kind == Kind.RATIO and not kpi.lower_is_better:
        return kpi.denominator
    return kpi.numerator


# --- Building the querysets ----------------------------------------------------------------


def _facts(
    kpi: Kpi,
    counter: str,
    source: Source,
    scope: _Scope,
    *,
    per_channel: bool,
    slowest_first: bool,
) -> QuerySet:
    facts = source.facts().using(reporting_database())
    if source.not_before:
        # An indexed column never later than the fact's time narrows the scan first.
        facts = facts.filter(**{f"{source.not_before}__gte": scope.start})
    facts = facts.annotate(
        fact_at=_expression(source.at),
        channel_code=_text(source.channel),
        dimension_value=_text(source.dimension),
    ).filter(fact_at__gte=scope.start, fact_at__lt=scope.end)

    if per_channel and scope.channel:
        facts = facts.filter(channel_code=scope.channel)
    dimension = (kpi.numerator_dimension if counter == kpi.numerator else "") or scope.dimension
    if dimension and source.dimension is not None:
        facts = facts.filter(dimension_value=dimension)

    layout = _LAYOUTS[facts.model]
    facts = facts.select_related(*layout.related)
    if layout.deferred:
        facts = facts.defer(*layout.deferred)
    if source.started is not None:
        elapsed = ExpressionWrapper(
            F("fact_at") - _expression(source.started), output_field=DurationField()
        )
        facts = facts.annotate(elapsed=elapsed)
        if slowest_first:
            # The slowest first: they are what moves a mean or a 95th percentile.
            return facts.order_by(F("elapsed").desc(nulls_last=True), "-pk")
    return facts.order_by("-fact_at", "-pk")


def _section(
    counter: str, index: int, source: Source, queryset: QuerySet, scope: _Scope
) -> Section:
    layout = _LAYOUTS[queryset.model]
    title = SECTION_TITLES.get(
        (counter, index), str(queryset.model._meta.verbose_name_plural).capitalize()
    )
    headers = ("When (UTC)", *layout.headers)
    has_elapsed = source.started is not None
    if has_elapsed:
        headers += (ELAPSED_HEADERS.get(counter, "Elapsed"),)

    def row(record: Any) -> list[Cell]:
        cells = [Cell(_time(record.fact_at)), *layout.cells(record, scope)]
        if has_elapsed:
            cells.append(Cell(_elapsed(record.elapsed)))
        return cells

    return Section(title=title, headers=headers, queryset=queryset, row=row)


def _open_items_section(scope: _Scope) -> Section:
    items = (
        # Known-answer items test reviewers; the queue-size KPI leaves them out too.
        ReviewItem.objects.using(reporting_database())
        .filter(status=ReviewStatus.OPEN, known_answer__isnull=True)
        .annotate(
            channel_code=Coalesce(
                F("order__channel__code"), F("delivery__channel__code"), Value("")
            ),
        )
        .select_related("order")
        .order_by("created_at", "pk")
    )
    if scope.dimension:
        items = items.filter(kind=scope.dimension)
    now = timezone.now()

    def row(item: ReviewItem) -> list[Cell]:
        return [
            Cell(_time(item.created_at)),
            *_review_item_cells(item, scope),
            Cell(_elapsed(now - item.created_at)),
        ]

    return Section(
        title="Open review items",
        headers=("Opened (UTC)", *_LAYOUTS[ReviewItem].headers, "Age"),
        queryset=items,
        row=row,
    )


def _expression(value: Any) -> Any:
    return F(value) if isinstance(value, str) else value


def _text(value: Any) -> Any:
    if value is None:
        return Value("", output_field=CharField())
    return Coalesce(_expression(value), Value(""), output_field=CharField())


def _admin_check(user: Any) -> Callable[[str], bool]:
    def may_open(model_label: str) -> bool:
        if user is None or not user.is_staff:
            return False
        app_label, model_name = model_label.split(".")
        return user.has_perm(f"{app_label}.view_{model_name}")

    return may_open


# --- Rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    headers: tuple[str, ...]
    cells: Callable[[Any, "_Scope"], list[Cell]]
    related: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()


def _order_cell(order: Order | None) -> Cell:
    if order is None:
        return Cell("—")
    return Cell(
        order.order_number or order.channel_order_id,
        reverse("orders:detail", args=[order.pk]),
    )


def _order_event_cells(event: OrderEvent, scope: _Scope) -> list[Cell]:
    order = event.order
    return [
        _order_cell(order),
        Cell(event.channel_code),
        Cell(order.get_status_display()),
        Cell(f"{money_format(order.total, order.currency)} {order.currency}"),
    ]


def _delivery_cells(delivery: Delivery, scope: _Scope) -> list[Cell]:
    url = ""
    if scope.may_open_admin("orders.delivery"):
        url = reverse("admin:orders_delivery_change", args=[delivery.pk])
    return [
        Cell(delivery.delivery_id, url),
        Cell(delivery.channel_code),
        Cell(delivery.topic),
        Cell(delivery.get_outcome_display()),
    ]


def _decision_cells(decision: Decision, scope: _Scope) -> list[Cell]:
    # There is no decision page outside the admin; the order page lists its decisions.
    url = ""
    if scope.may_open_admin("guardrails.decision"):
        url = reverse("admin:guardrails_decision_change", args=[decision.pk])
    return [
        Cell(f"#{decision.pk}", url),
        Cell(decision.action.code),
        _order_cell(decision.order),
        Cell(decision.channel_code),
        Cell(f"{decision.model_name} {decision.model_version}"),
        Cell(f"{decision.confidence:.2f}"),
        Cell(decision.get_verdict_display()),
        Cell(decision.get_review_outcome_display() or "—"),
        Cell(decision.get_outcome_display()),
    ]


def _review_item_cells(item: ReviewItem, scope: _Scope) -> list[Cell]:
    return [
        Cell(f"#{item.pk}", reverse("reviews:item", args=[item.pk])),
        Cell(item.get_kind_display()),
        _order_cell(item.order),
        Cell(item.channel_code or "—"),
        Cell(item.get_status_display()),
    ]


def _shipment_cells(shipment: Shipment, scope: _Scope) -> list[Cell]:
    service = shipment.carrier_service
    carrier = service.carrier.code if service else (shipment.carrier_code or "unknown")
    return [
        Cell(shipment.shipment_id),
        _order_cell(shipment.order),
        Cell(shipment.channel_code),
        Cell(carrier),
        Cell(shipment.get_status_display()),
        Cell("yes" if shipment.is_duplicate else "no"),
        Cell("yes" if shipment.address_corrected else "no"),
    ]


def _fulfilment_exception_cells(exception: FulfilmentException, scope: _Scope) -> list[Cell]:
    shipment = exception.shipment
    return [
        _order_cell(exception.order),
        Cell(exception.channel_code),
        Cell(exception.get_stage_display()),
        Cell(exception.get_reason_display()),
        Cell(shipment.shipment_id if shipment else "—"),
    ]


def _return_cells(order_return: OrderReturn, scope: _Scope) -> list[Cell]:
    return [
        Cell(order_return.return_id),
        _order_cell(order_return.order),
        Cell(order_return.channel_code),
        Cell(order_return.get_reason_display()),
        Cell(order_return.get_attributed_to_display()),
        Cell("yes" if order_return.involves_substitution else "no"),
    ]


def _chargeback_cells(chargeback: Chargeback, scope: _Scope) -> list[Cell]:
    amount = money_format(chargeback.amount, chargeback.currency)
    return [
        Cell(chargeback.chargeback_id),
        _order_cell(chargeback.order),
        Cell(chargeback.channel_code),
        Cell(f"{amount} {chargeback.currency}"),
        Cell(chargeback.reason or "—"),
    ]


def _discrepancy_cells(discrepancy: InventoryDiscrepancy, scope: _Scope) -> list[Cell]:
    return [
        Cell(discrepancy.sku.code),
        Cell(discrepancy.location.code),
        Cell(str(discrepancy.expected)),
        Cell(str(discrepancy.counted)),
        Cell(f"{discrepancy.difference:+d}"),
    ]


_LAYOUTS: dict[type[Model], _Layout] = {
    OrderEvent: _Layout(
        ("Order", "Channel", "Order status now", "Order total"),
        _order_event_cells,
        related=("order",),
    ),
    # The raw body and headers can be large and hold customer data; the list needs neither.
    Delivery: _Layout(
        ("Delivery", "Channel", "Topic", "Outcome"),
        _delivery_cells,
        deferred=("body", "headers", "error"),
    ),
    Decision: _Layout(
        (
            "Decision",
            "Action",
            "Order",
            "Channel",
            "Model",
            "Confidence",
            "Verdict",
            "Review",
            "Label",
        ),
        _decision_cells,
        related=("action", "order"),
        deferred=("before", "after", "facts", "reasons", "rationale", "label_note"),
    ),
    ReviewItem: _Layout(
        ("Item", "Queue", "Order", "Channel", "Status"),
        _review_item_cells,
        related=("order",),
    ),
    Shipment: _Layout(
        ("Shipment", "Order", "Channel", "Carrier", "Status", "Duplicate", "Address corrected"),
        _shipment_cells,
        related=("order", "carrier_service__carrier"),
    ),
    FulfilmentException: _Layout(
        ("Order", "Channel", "Stage", "Reason", "Shipment"),
        _fulfilment_exception_cells,
        related=("order", "shipment"),
        deferred=("note",),
    ),
    OrderReturn: _Layout(
        ("Return", "Order", "Channel", "Reason", "Attributed to", "Substituted line"),
        _return_cells,
        related=("order",),
        deferred=("note",),
    ),
    Chargeback: _Layout(
        ("Chargeback", "Order", "Channel", "Amount", "Reason"),
        _chargeback_cells,
        related=("order",),
    ),
    InventoryDiscrepancy: _Layout(
        ("SKU", "Location", "Expected", "Counted", "Difference"),
        _discrepancy_cells,
        related=("sku", "location"),
        deferred=("note",),
    ),
}


def _time(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return timezone.localtime(moment, UTC).strftime("%Y-%m-%d %H:%M")


def _elapsed(elapsed: timedelta | None) -> str:
    if elapsed is None:
        return "—"
    seconds = max(Decimal(str(elapsed.total_seconds())), Decimal("0"))
    return duration_format(seconds)
