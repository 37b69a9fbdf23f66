"""Recompute the KPI rollups (`KpiRollup`) from the recorded facts.

Each counter of `monitoring.kpis.COUNTERS` is counted per hour, channel and dimension value
with one GROUP BY query per source. The two latency counters stream their facts instead,
because a histogram needs every latency, and keep only the per-hour histograms in memory.
A refresh replaces the hour rows of its window, so running it twice gives the same rows and
a count that dropped to zero loses its row. The day rows of the days it touched are then
summed again from their hour rows.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import (
    CharField,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import Combinable
from django.db.models.functions import Cast, Coalesce, Lower, NullIf, TruncHour
from django.utils import timezone

from guardrails.models import AuditEntry, Decision, DecisionOutcome, ReviewOutcome
from guardrails.rollout_selectors import shadow_record_q
from inventory.models import InventoryDiscrepancy
from omsguard.db_cursors import statements_unprepared
from orders.models import (
    SHIPPING_ERROR_STATUSES,
    Chargeback,
    Delivery,
    DeliveryOutcome,
    FulfilmentException,
    Order,
    OrderEvent,
    OrderReturn,
    Shipment,
)
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

from .kpis import COUNTERS, histogram_add, histogram_empty, histogram_merge
from .models import Granularity, KpiRollup
from .selectors import DAY, day_floor, hour_ceil, hour_floor

logger = logging.getLogger(__name__)

# The action code of substitutions (guardrails.defaults.ACTIONS).
SUBSTITUTION_ACTION = "substitute_sku"
# Queues whose items record a data problem that hygiene found in an order. Items of these
# kinds that carry an action code are AI proposals (an address correction), not problems.
DATA_PROBLEM_QUEUES = (
    ReviewKind.UNMAPPED_SKU,
    ReviewKind.ADDRESS,
    ReviewKind.CARRIER_CODE,
    ReviewKind.OUT_OF_STOCK,
)
# Serialises refreshes on PostgreSQL: two at once would both delete a window's rows and then
# both insert them, and the second insert would break the unique bucket constraint.
REFRESH_LOCK_ID = 0x6B70695F726F6C6C  # "kpi_roll" in ASCII
STREAM_CHUNK_SIZE = 2000
SECONDS_PLACES = Decimal("0.001")

FieldOrExpression = Combinable | str


@dataclass(frozen=True)
class Source:
    """One query's worth of facts for a counter.

    `at` is when a fact counts, `channel` and `dimension` what it is grouped by, and
    `started` (for counters with a total) when the measured time began. `not_before` names
    a field that is never earlier than `at`, so an indexed filter can narrow the facts
    before a computed `at` is evaluated.
    """

    facts: Callable[[], QuerySet]
    at: FieldOrExpression
    channel: FieldOrExpression | None = None
    dimension: FieldOrExpression | None = None
    started: FieldOrExpression | None = None
    not_before: str = ""


@dataclass
class Bucket:
    count: int = 0
    total: Decimal = Decimal("0")
    histogram: list[int] = field(default_factory=list)


# (counter, bucket_start, channel, dimension)
BucketKey = tuple[str, datetime, str, str]


def kpi_rollups_refresh(*, since: datetime, until: datetime, now: datetime | None = None) -> int:
    """Recompute the hour rows of [floor(since), ceil(until)) and the day rows they touch.

    Also takes the snapshot of open review items into the hour of `now`. Works one UTC day
    at a time, each in its own transaction, so a backfill keeps memory flat. Returns the
    number of rows written, hour and day rows together. Its aggregates run unprepared
    (statements_unprepared explains why).
    """
    with statements_unprepared():
        return _kpi_rollups_refresh(since=since, until=until, now=now)


def _kpi_rollups_refresh(*, since: datetime, until: datetime, now: datetime | None) -> int:
    if until < since:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()}).")
    now = now or timezone.now()
    start, end = hour_floor(since), hour_ceil(until)
    begun = time.monotonic()

    written = _queue_snapshot_write(now)
    snapshot_day = day_floor(now)
    for day_start, day_end in _day_slices(start, end):
        written += _slice_refresh(day_start, day_end)
        if day_floor(day_start) == snapshot_day:
            snapshot_day = None
    if snapshot_day is not None:
        with transaction.atomic():
            _refresh_lock()
            written += _day_rows_replace(snapshot_day)

    logger.info(
        "kpi rollups refreshed",
        extra={
            "start": start.isoformat(),
            "end": end.isoformat(),
            "rows": written,
            "seconds": round(time.monotonic() - begun, 3),
        },
    )
    return written


def _day_slices(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    moment = start
    while moment < end:
        slice_end = min(day_floor(moment) + DAY, end)
        yield moment, slice_end
        moment = slice_end


def _slice_refresh(start: datetime, end: datetime) -> int:
    """Replace the additive counters' hour rows of [start, end), inside one day."""
    with transaction.atomic():
        _refresh_lock()
        buckets = _buckets_count(start, end)
        additive = [slug for slug, counter in COUNTERS.items() if not counter.is_gauge]
        KpiRollup.objects.filter(
            granularity=Granularity.HOUR,
            counter__in=additive,
            bucket_start__gte=start,
            bucket_start__lt=end,
        ).delete()
        rows = [_rollup(Granularity.HOUR, key, bucket) for key, bucket in buckets.items()]
        KpiRollup.objects.bulk_create(rows)
        return len(rows) + _day_rows_replace(day_floor(start))


def _refresh_lock() -> None:
    # SQLite allows one writer at a time anyway.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_ID])


def _rollup(granularity: str, key: BucketKey, bucket: Bucket) -> KpiRollup:
    counter, bucket_start, channel, dimension = key
    return KpiRollup(
        counter=counter,
        granularity=granularity,
        bucket_start=bucket_start,
        channel=channel,
        dimension=dimension,
        count=bucket.count,
        total=bucket.total.quantize(SECONDS_PLACES),
        histogram=bucket.histogram,
    )


# --- Counting the facts ------------------------------------------------------------------


def _buckets_count(start: datetime, end: datetime) -> dict[BucketKey, Bucket]:
    buckets: dict[BucketKey, Bucket] = defaultdict(Bucket)
    for slug, sources in counter_sources().items():
        for source in sources:
            if COUNTERS[slug].has_histogram:
                _stream_into(buckets, slug, source, start, end)
            else:
                _aggregate_into(buckets, slug, source, start, end)
    return buckets


def _facts_in(source: Source, start: datetime, end: datetime) -> QuerySet:
    facts = source.facts()
    if source.not_before:
        facts = facts.filter(**{f"{source.not_before}__gte": start})
    return (
        facts.alias(fact_at=_expression(source.at))
        .filter(fact_at__gte=start, fact_at__lt=end)
        .annotate(
            channel_code=_text(source.channel),
            dimension_value=_text(source.dimension),
        )
        .order_by()
    )


def _expression(value: FieldOrExpression) -> Combinable:
    return F(value) if isinstance(value, str) else value


def _text(value: FieldOrExpression | None) -> Combinable:
    if value is None:
        return Value("", output_field=CharField())
    return Coalesce(_expression(value), Value(""), output_field=CharField())


def _aggregate_into(
    buckets: dict[BucketKey, Bucket], slug: str, source: Source, start: datetime, end: datetime
) -> None:
    aggregates = {"events": Count("pk")}
    if source.started is not None:
        elapsed = F("fact_at") - _expression(source.started)
        aggregates["elapsed"] = Sum(ExpressionWrapper(elapsed, output_field=DurationField()))
    rows = (
        _facts_in(source, start, end)
        .annotate(hour=TruncHour("fact_at", tzinfo=UTC))
        .values("hour", "channel_code", "dimension_value")
        .annotate(**aggregates)
    )
    for row in rows:
        bucket = buckets[slug, row["hour"], row["channel_code"], row["dimension_value"]]
        bucket.count += row["events"]
        if row.get("elapsed") is not None:
            bucket.total += _seconds(row["elapsed"])


def _stream_into(
    buckets: dict[BucketKey, Bucket], slug: str, source: Source, start: datetime, end: datetime
) -> None:
    """Count each fact's latency into its hour's histogram, reading the facts in chunks."""
    rows = (
        _facts_in(source, start, end)
        .annotate(counted_at=F("fact_at"), started_at=_expression(source.started))
        .values_list("counted_at", "started_at", "channel_code", "dimension_value")
        .iterator(chunk_size=STREAM_CHUNK_SIZE)
    )
    for counted_at, started_at, channel_code, dimension_value in rows:
        bucket = buckets[slug, hour_floor(counted_at), channel_code, dimension_value]
        if not bucket.histogram:
            bucket.histogram = histogram_empty()
        # NOTE: a start later than the end (clock skew between hosts) counts as 0 seconds.
        seconds = max((counted_at - started_at).total_seconds(), 0.0)
        bucket.count += 1
        bucket.total += Decimal(str(seconds))
        histogram_add(bucket.histogram, seconds)


def _seconds(elapsed: timedelta) -> Decimal:
    whole = elapsed.days * 86400 + elapsed.seconds
    return Decimal(whole) + Decimal(elapsed.microseconds) / Decimal(1_000_000)


# --- Where each counter's facts come from ----------------------------------------------------


def counter_sources() -> dict[str, tuple[Source, ...]]:
    """Return the sources of each additive counter. kpis.COUNTERS describes them in words."""
    return {
        "orders_received": (Source(Order.objects.all, "created_at", "channel__code"),),
        "order_errors": (
            Source(_first_data_problems, "created_at", "order__channel__code"),
            Source(_failed_deliveries, "received_at", "channel__code"),
        ),
        "fulfilment_exceptions": (
            Source(FulfilmentException.objects.all, "occurred_at", "channel__code", "stage"),
        ),
        "shipments": (Source(Shipment.objects.all, "shipped_at", "channel__code", _carrier()),),
        "duplicate_shipments": (
            Source(
                lambda: Shipment.objects.filter(is_duplicate=True), "shipped_at", "channel__code"
            ),
        ),
        "stock_counts": (Source(InventoryDiscrepancy.objects.all, "created_at"),),
        "stock_discrepancies": (
            Source(lambda: InventoryDiscrepancy.objects.exclude(difference=0), "created_at"),
        ),
        "returns": (
            Source(OrderReturn.objects.all, "received_at", "channel__code", "attributed_to"),
        ),
        "substituted_returns": (
            Source(
                lambda: OrderReturn.objects.filter(involves_substitution=True),
                "received_at",
                "channel__code",
            ),
        ),
        "substitutions_applied": (
            Source(_substitutions_applied, "applied_at", "channel__code"),
            Source(_substitutions_revised, "reviewed_at", "channel__code"),
        ),
        "substitutions_resolved": (
            Source(_substitutions_applied, "applied_at", "channel__code"),
            Source(_substitutions_turned_down, "reviewed_at", "channel__code"),
        ),
        "substitutions_accepted": (Source(_substitutions_applied, "applied_at", "channel__code"),),
        "ai_errors_detected": (
            Source(
                _ai_errors,
                Coalesce(_first_error_label_at(), F("labelled_at")),
                "channel__code",
                "action__code",
                started="applied_at",
                not_before="labelled_at",
            ),
        ),
        "ai_errors_remediated": (
            Source(
                lambda: _ai_errors().filter(reverted_at__isnull=False),
                "reverted_at",
                "channel__code",
                "action__code",
                started="applied_at",
            ),
        ),
        "decisions": (Source(_decisions, "created_at", "channel__code", "action__code"),),
        "reviewed_decisions": (
            Source(
                lambda: _decisions().filter(review_outcome__in=ReviewOutcome.values),
                "reviewed_at",
                "channel__code",
                "action__code",
            ),
        ),
        "disagreements": (
            Source(
                lambda: _decisions().filter(review_outcome=ReviewOutcome.DISAGREED),
                "reviewed_at",
                "channel__code",
                "action__code",
            ),
        ),
        "decision_latency": (
            Source(
                lambda: _first_events("order.ready"),
                "created_at",
                "order__channel__code",
                started="order__delivery__received_at",
            ),
        ),
        "channel_cancellations": (
            Source(
                lambda: OrderEvent.objects.filter(kind="order.cancelled", data__has_key="delivery"),
                "created_at",
                "order__channel__code",
            ),
        ),
        "chargebacks": (Source(Chargeback.objects.all, "received_at", "channel__code"),),
        "corrected_address_shipments": (
            Source(
                lambda: Shipment.objects.filter(address_corrected=True),
                "shipped_at",
                "channel__code",
            ),
        ),
        # Counted at shipped_at, the time base of its denominator, and not at the status
        # change: a later change (delivery failed, then returned to sender days later) then
        # only moves the count inside the shipment's own hour instead of into a second hour.
        "corrected_address_shipping_errors": (
            Source(
                lambda: Shipment.objects.filter(
                    address_corrected=True, status__in=SHIPPING_ERROR_STATUSES
                ),
                "shipped_at",
                "channel__code",
            ),
        ),
        "review_decided": (
            Source(
                # Known-answer items test reviewers; they are no work the queues had to do.
                lambda: ReviewItem.objects.filter(
                    decided_by__isnull=False, known_answer__isnull=True
                ),
                "decided_at",
                Coalesce(F("order__channel__code"), F("delivery__channel__code")),
                "kind",
                started="created_at",
            ),
        ),
    }


def _first_events(kind: str) -> QuerySet:
    """Select each order's first event of `kind`; of two at the same time, the lower id."""
    earlier = OrderEvent.objects.filter(order=OuterRef("order"), kind=kind).filter(
        Q(created_at__lt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
    )
    return OrderEvent.objects.filter(kind=kind).filter(~Exists(earlier))


def _first_data_problems() -> QuerySet:
    """Select each order's first review item for a data problem that hygiene found.

    Counted from review items rather than order.held events, because orders are also held
    for reasons that are not processing errors. Examples are an AI proposal waiting for
    review, a high-value escalation, a missed review deadline and a held channel. A channel
    hold is the remediation of the order-error alert, so counting it would keep that alert
    firing.
    """
    problems = Q(kind__in=DATA_PROBLEM_QUEUES, action_code="")
    earlier = ReviewItem.objects.filter(problems, order=OuterRef("order")).filter(
        Q(created_at__lt=OuterRef("created_at"))
        | Q(created_at=OuterRef("created_at"), pk__lt=OuterRef("pk"))
    )
    return ReviewItem.objects.filter(problems, order__isnull=False).filter(~Exists(earlier))


def _failed_deliveries() -> QuerySet:
    return Delivery.objects.filter(
        outcome__in=[DeliveryOutcome.FAILED, DeliveryOutcome.DEAD_LETTER]
    )


def _carrier() -> Combinable:
    return Coalesce(
        F("carrier_service__carrier__code"),
        NullIf(Lower("carrier_code"), Value("")),
        Value("unknown"),
        output_field=CharField(),
    )


def _decisions() -> QuerySet:
    """Select the decisions the counters count: all but a shadow canary's candidate records.

    Those carry the live model's name but decided nothing, so counting them would inflate
    every decision-based counter.
    """
    return Decision.objects.exclude(shadow_record_q())


def _substitutions() -> QuerySet:
    return _decisions().filter(action__code=SUBSTITUTION_ACTION)


def _substitutions_applied() -> QuerySet:
    return _substitutions().filter(applied_at__isnull=False)


def _substitutions_turned_down() -> QuerySet:
    # Rejected or revised before anything was applied. An applied substitution that an audit
    # sample later disagreed with already counts once, at applied_at.
    return _substitutions().filter(applied_at__isnull=True, review_outcome=ReviewOutcome.DISAGREED)


def _substitutions_revised() -> QuerySet:
    # A revision applies the reviewer's SKU and closes the item as accepted, but leaves
    # applied_at empty because the AI's own proposal was never applied.
    return _substitutions_turned_down().filter(review_item__status=ReviewStatus.ACCEPTED)


def _ai_errors() -> QuerySet:
    return _decisions().filter(outcome=DecisionOutcome.ERROR, applied_at__isnull=False)


def _first_error_label_at() -> Subquery:
    # A revert labels the decision again and moves labelled_at to the revert, so the time
    # an error was first detected comes from the audit log.
    first = (
        AuditEntry.objects.filter(
            action="decision.labelled",
            target_type="decision",
            target_id=Cast(OuterRef("pk"), CharField()),
            after__outcome=DecisionOutcome.ERROR,
        )
        .order_by("created_at", "pk")
        .values("created_at")[:1]
    )
    return Subquery(first)


# --- Gauges and day rows ---------------------------------------------------------------------


def _queue_snapshot_write(now: datetime) -> int:
    """Replace the open-queue snapshot of now's hour: one row per queue kind, 0 when empty.

    Known-answer items are left out, so seeding them never moves queue size or age.
    """
    open_items = (
        ReviewItem.objects.filter(status=ReviewStatus.OPEN, known_answer__isnull=True)
        .values("kind")
        .annotate(items=Count("pk"), oldest=Min("created_at"))
        .order_by()
    )
    by_kind = {row["kind"]: row for row in open_items}
    bucket_start = hour_floor(now)
    rows = []
    for kind in sorted(set(ReviewKind.values) | set(by_kind)):
        row = by_kind.get(kind)
        bucket = Bucket()
        if row is not None:
            bucket.count = row["items"]
            bucket.total = max(_seconds(now - row["oldest"]), Decimal("0"))
        rows.append(_rollup(Granularity.HOUR, ("queue_open", bucket_start, "", kind), bucket))

    with transaction.atomic():
        _refresh_lock()
        KpiRollup.objects.filter(
            granularity=Granularity.HOUR, counter="queue_open", bucket_start=bucket_start
        ).delete()
        KpiRollup.objects.bulk_create(rows)
    return len(rows)


def _day_rows_replace(day: datetime) -> int:
    """Sum the day's hour rows into its day rows; gauges keep the day's last snapshot.

    Call inside the refresh transaction.
    """
    hour_rows = (
        KpiRollup.objects.filter(
            granularity=Granularity.HOUR, bucket_start__gte=day, bucket_start__lt=day + DAY
        )
        .order_by("bucket_start")
        .values_list(
            "counter", "bucket_start", "channel", "dimension", "count", "total", "histogram"
        )
    )
    sums: dict[BucketKey, Bucket] = defaultdict(Bucket)
    last_snapshot: dict[str, datetime] = {}
    for counter, bucket_start, channel, dimension, count, total, histogram in hour_rows:
        key = (counter, day, channel, dimension)
        if counter in COUNTERS and COUNTERS[counter].is_gauge:
            if last_snapshot.get(counter) != bucket_start:
                for stale in [key for key in sums if key[0] == counter]:
                    del sums[stale]
                last_snapshot[counter] = bucket_start
            sums[key] = Bucket(count=count, total=total)
            continue
        bucket = sums[key]
        bucket.count += count
        bucket.total += total
        if histogram:
            bucket.histogram = histogram_merge([bucket.histogram, histogram])

    KpiRollup.objects.filter(granularity=Granularity.DAY, bucket_start=day).delete()
    rows = [_rollup(Granularity.DAY, key, bucket) for key, bucket in sums.items()]
    KpiRollup.objects.bulk_create(rows)
    return len(rows)
