"""The KPIs of PRODUCT.md section 4, defined over additive counters kept in `KpiRollup`.

A counter is a number of events per hour, per channel and per dimension value (an action
code, a queue kind, a carrier code), computed from the recorded facts by
`monitoring.rollups`. A KPI is arithmetic over counters: a ratio of two sums, a mean of
summed seconds, a percentile of merged latency histograms, the latest gauge snapshot, or a
mix of shares. Because every counter is a sum, the value for any period, channel or
dimension is exact at hour resolution without reading the raw tables again.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from operator import add


class Unit(StrEnum):
    PER_10K_ORDERS = "per 10,000 orders"
    PER_1000_ORDERS = "per 1,000 orders"
    PERCENT = "%"
    SECONDS = "seconds"
    COUNT = "count"
    SHARE = "share"


class Kind(StrEnum):
    RATIO = "ratio"  # sum(numerator) / sum(denominator) * scale
    COUNT = "count"  # sum(numerator)
    MEAN = "mean"  # sum(total) / sum(count) of the numerator counter, in seconds
    PERCENTILE = "percentile"  # percentile of the numerator counter's merged histograms
    GAUGE_SUM = "gauge_sum"  # latest snapshot's count, summed over dimension values
    GAUGE_MAX = "gauge_max"  # latest snapshot's total, the largest over dimension values
    MIX = "mix"  # each dimension value's share of the numerator counter


@dataclass(frozen=True)
class Counter:
    """An additive number kept per hour; `source` names the recorded facts it counts."""

    slug: str
    source: str
    dimension: str = ""  # what the dimension column holds, e.g. "action"; "" when unused
    per_channel: bool = True
    has_histogram: bool = False
    is_gauge: bool = False


COUNTERS: dict[str, Counter] = {
    counter.slug: counter
    for counter in [
        Counter("orders_received", "Orders created, at the time the order was created."),
        Counter(
            "order_errors",
            "Orders with a data problem: each order once, when its first review item for "
            "an unmapped SKU, an address, an unknown carrier code or a stock shortage opened "
            "(AI proposals not included); plus deliveries whose processing failed or went to "
            "the dead letter queue (they never became orders), at received_at.",
        ),
        Counter(
            "fulfilment_exceptions",
            "Pick, pack and ship mistakes the warehouse reported, at occurred_at, by stage.",
            dimension="stage",
        ),
        Counter(
            "shipments",
            "Shipments at shipped_at, by carrier: the canonical carrier's code when the "
            'carrier code maps to a known service, else the code as sent in lower case, "unknown" '
            "when none was given.",
            dimension="carrier",
        ),
        Counter("duplicate_shipments", "Shipments marked is_duplicate, at shipped_at."),
        Counter(
            "stock_counts",
            "Physical stock counts recorded, matching ones included (every "
            "InventoryDiscrepancy row), at created_at.",
            per_channel=False,
        ),
        Counter(
            "stock_discrepancies",
            "Physical stock counts that differed from the stock held (InventoryDiscrepancy "
            "rows with a difference other than 0), at created_at.",
            per_channel=False,
        ),
        Counter(
            "returns",
            "Returns at received_at, by attributed_to (fulfilment, substitution, product, "
            "customer).",
            dimension="attribution",
        ),
        Counter(
            "substituted_returns",
            "Returns with a returned line that was substituted, at received_at.",
        ),
        Counter(
            "substitutions_applied",
            "Substitution decisions carried out: applied as proposed (on their own or after "
            "approval) at applied_at, or applied with a reviewer's revised SKU at reviewed_at.",
        ),
        Counter(
            "substitutions_resolved",
            "Substitution decisions that reached an outcome: applied as proposed, at "
            "applied_at, or rejected or revised by a reviewer, at reviewed_at.",
        ),
        Counter(
            "substitutions_accepted",
            "Substitution decisions applied as the AI proposed them, on their own or approved "
            "by a reviewer, at applied_at. A revision counts as resolved, not accepted.",
        ),
        Counter(
            "ai_errors_detected",
            "Applied decisions labelled an error, at the first audit entry that labelled "
            "them an error (labelled_at when there is none); total is the seconds from "
            "applied_at to that time.",
            dimension="action",
        ),
        Counter(
            "ai_errors_remediated",
            "Applied decisions labelled an error and reverted, at reverted_at; total is the "
            "seconds from applied_at to reverted_at.",
            dimension="action",
        ),
        Counter(
            "decisions",
            "Decisions proposed, at created_at, by action code; a shadow canary's candidate "
            "decisions are left out.",
            dimension="action",
        ),
        Counter(
            "reviewed_decisions",
            "Decisions with a review outcome, at reviewed_at, by action code.",
            dimension="action",
        ),
        Counter(
            "disagreements",
            "Reviewed decisions the reviewer rejected or revised, at reviewed_at.",
            dimension="action",
        ),
        Counter(
            "decision_latency",
            "Orders reaching their first fulfilment decision (each order once, at its first "
            "order.ready event); histogram and total are the seconds since the order's "
            "delivery arrived.",
            has_histogram=True,
        ),
        Counter(
            "channel_cancellations",
            "Orders the channel cancelled: order.cancelled events a channel delivery caused "
            "(not cancellations by a decision), at created_at.",
        ),
        Counter("chargebacks", "Chargebacks at received_at."),
        Counter(
            "corrected_address_shipments",
            "Shipments marked address_corrected (the order's address was corrected before "
            "it shipped), at shipped_at.",
        ),
        Counter(
            "corrected_address_shipping_errors",
            "Those shipments whose status is now delivery failed or returned to sender, at "
            "shipped_at like the shipments they are a share of.",
        ),
        Counter(
            "review_decided",
            "Review items a person decided (decided_by set), at decided_at, by queue kind; "
            "histogram and total are the seconds from created_at to decided_at.",
            dimension="queue",
            has_histogram=True,
        ),
        Counter(
            "queue_open",
            "Snapshot of open review items per queue kind, taken by each rollup refresh into "
            "the hour it ran: count is the number open, total the oldest one's age in "
            "seconds. Every queue kind gets a row, 0 when empty.",
            dimension="queue",
            per_channel=False,
            is_gauge=True,
        ),
    ]
}


@dataclass(frozen=True)
class Target:
    """A goal for a KPI: a fixed value, or a factor of the baseline period's value."""

    value: Decimal | None = None
    baseline_factor: Decimal | None = None  # e.g. 0.5: half the baseline
    label: str = ""


@dataclass(frozen=True)
class Kpi:
    slug: str
    name: str
    description: str
    kind: Kind
    unit: Unit
    numerator: str
    numerator_dimension: str = ""  # only this dimension value of the numerator counter
    denominator: str = ""
    scale: Decimal = Decimal("1")
    percentile: Decimal | None = None
    lower_is_better: bool = True
    target: Target | None = None
    is_ninety_day_goal: bool = False
    dimension_label: str = ""  # the numerator counter's dimension, when a KPI may be split
    drilldown: str = ""  # what the drill-down lists: orders, decisions, shipments, ...
    tags: tuple[str, ...] = field(default_factory=tuple)


KPIS: dict[str, Kpi] = {
    kpi.slug: kpi
    for kpi in [
        Kpi(
            "order_error_rate",
            "Order processing error rate",
            "Orders held for a data problem or failed in processing, per 10,000 orders received.",
            Kind.RATIO,
            Unit.PER_10K_ORDERS,
            numerator="order_errors",
            denominator="orders_received",
            scale=Decimal("10000"),
            drilldown="orders",
        ),
        Kpi(
            "fulfilment_exceptions",
            "Fulfilment exceptions",
            "Pick, pack and ship mistakes reported by the warehouse.",
            Kind.COUNT,
            Unit.COUNT,
            numerator="fulfilment_exceptions",
            dimension_label="stage",
            drilldown="fulfilment_exceptions",
        ),
        Kpi(
            "fulfilment_error_rate",
            "Fulfilment error rate",
            "Fulfilment exceptions per 100 shipments.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="fulfilment_exceptions",
            denominator="shipments",
            scale=Decimal("100"),
            target=Target(value=Decimal("0.2"), label="under 0.2 %"),
            is_ninety_day_goal=True,
            drilldown="fulfilment_exceptions",
        ),
        Kpi(
            "inventory_discrepancy_rate",
            "Inventory discrepancy rate",
            "Stock counts that differed from the expected stock, per 100 counts.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="stock_discrepancies",
            denominator="stock_counts",
            scale=Decimal("100"),
            drilldown="stock_discrepancies",
        ),
        Kpi(
            "fulfilment_return_rate",
            "Returns caused by fulfilment errors",
            "Returns whose reason code blames the warehouse or carrier, per 100 shipments.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="returns",
            numerator_dimension="fulfilment",
            denominator="shipments",
            scale=Decimal("100"),
            target=Target(baseline_factor=Decimal("0.5"), label="half the baseline"),
            is_ninety_day_goal=True,
            drilldown="returns",
        ),
        Kpi(
            "substitution_return_rate",
            "Return rate of substituted orders",
            "Returns of a substituted line per 100 substitutions applied.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="substituted_returns",
            denominator="substitutions_applied",
            scale=Decimal("100"),
            drilldown="returns",
            tags=("playbook:substitution",),
        ),
        Kpi(
            "substitution_acceptance_rate",
            "Substitution acceptance rate",
            "Substitutions applied as proposed (on their own or approved) per 100 that reached "
            "an outcome: applied, rejected or revised by a reviewer.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="substitutions_accepted",
            denominator="substitutions_resolved",
            scale=Decimal("100"),
            lower_is_better=False,
            drilldown="decisions",
            tags=("playbook:substitution",),
        ),
        Kpi(
            "ai_error_mttd",
            "Mean time to detect AI-caused errors",
            "From an AI decision being applied to it being labelled an error.",
            Kind.MEAN,
            Unit.SECONDS,
            numerator="ai_errors_detected",
            dimension_label="action",
            drilldown="decisions",
        ),
        Kpi(
            "ai_error_mttr",
            "Mean time to remediate AI-caused errors",
            "From an AI decision being applied to it being reverted, for decisions labelled "
            "an error.",
            Kind.MEAN,
            Unit.SECONDS,
            numerator="ai_errors_remediated",
            dimension_label="action",
            drilldown="decisions",
        ),
        Kpi(
            "disagreement_rate",
            "Disagreement rate",
            "Reviewed AI proposals the reviewer rejected or revised, per 100 reviewed.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="disagreements",
            denominator="reviewed_decisions",
            scale=Decimal("100"),
            target=Target(value=Decimal("2"), label="under 2 % before widening autonomy"),
            dimension_label="action",
            drilldown="decisions",
        ),
        Kpi(
            "queue_size",
            "Exception queue size",
            "Open review items, all queues together (the latest snapshot in the period).",
            Kind.GAUGE_SUM,
            Unit.COUNT,
            numerator="queue_open",
            dimension_label="queue",
            drilldown="review_items",
        ),
        Kpi(
            "queue_oldest_age",
            "Oldest open review item",
            "Age of the oldest open review item (the latest snapshot in the period).",
            Kind.GAUGE_MAX,
            Unit.SECONDS,
            numerator="queue_open",
            dimension_label="queue",
            drilldown="review_items",
        ),
        Kpi(
            "decision_latency_p50",
            "Order to fulfilment decision, median",
            "Time from an order's delivery arriving to its first fulfilment decision.",
            Kind.PERCENTILE,
            Unit.SECONDS,
            numerator="decision_latency",
            percentile=Decimal("0.50"),
            drilldown="orders",
        ),
        Kpi(
            "decision_latency_p95",
            "Order to fulfilment decision, 95th percentile",
            "Time from an order's delivery arriving to its first fulfilment decision.",
            Kind.PERCENTILE,
            Unit.SECONDS,
            numerator="decision_latency",
            percentile=Decimal("0.95"),
            drilldown="orders",
        ),
        Kpi(
            "duplicate_shipment_rate",
            "Duplicate shipments",
            "Shipments that repeated an earlier shipment of the same order, per 1,000 orders.",
            Kind.RATIO,
            Unit.PER_1000_ORDERS,
            numerator="duplicate_shipments",
            denominator="orders_received",
            scale=Decimal("1000"),
            drilldown="shipments",
        ),
        Kpi(
            "carrier_mix",
            "Carrier mix",
            "Each carrier's share of shipments.",
            Kind.MIX,
            Unit.SHARE,
            numerator="shipments",
            dimension_label="carrier",
            drilldown="shipments",
        ),
        Kpi(
            "cancellation_rate",
            "Marketplace cancellations",
            "Orders the channel cancelled, per 1,000 orders received; an early sign of misrouting.",
            Kind.RATIO,
            Unit.PER_1000_ORDERS,
            numerator="channel_cancellations",
            denominator="orders_received",
            scale=Decimal("1000"),
            drilldown="orders",
        ),
        Kpi(
            "chargeback_rate",
            "Chargebacks",
            "Chargebacks per 1,000 orders received; an early sign of misrouting.",
            Kind.RATIO,
            Unit.PER_1000_ORDERS,
            numerator="chargebacks",
            denominator="orders_received",
            scale=Decimal("1000"),
            drilldown="chargebacks",
        ),
        Kpi(
            "address_shipping_error_rate",
            "Shipping errors after address corrections",
            "Shipments of address-corrected orders that failed delivery or came back, per 100.",
            Kind.RATIO,
            Unit.PERCENT,
            numerator="corrected_address_shipping_errors",
            denominator="corrected_address_shipments",
            scale=Decimal("100"),
            drilldown="shipments",
            tags=("playbook:address",),
        ),
        Kpi(
            "time_to_approve_p50",
            "Time to approve, median",
            "From a review item opening to a person deciding it.",
            Kind.PERCENTILE,
            Unit.SECONDS,
            numerator="review_decided",
            percentile=Decimal("0.50"),
            dimension_label="queue",
            drilldown="review_items",
            tags=("playbook:address",),
        ),
        Kpi(
            "time_to_approve_p95",
            "Time to approve, 95th percentile",
            "From a review item opening to a person deciding it.",
            Kind.PERCENTILE,
            Unit.SECONDS,
            numerator="review_decided",
            percentile=Decimal("0.95"),
            dimension_label="queue",
            drilldown="review_items",
        ),
        Kpi(
            "manual_cleanups_rate",
            "Manual clean-ups",
            "Review items a person had to decide, per 1,000 orders received.",
            Kind.RATIO,
            Unit.PER_1000_ORDERS,
            numerator="review_decided",
            denominator="orders_received",
            scale=Decimal("1000"),
            target=Target(baseline_factor=Decimal("0.4"), label="60–80 % below the baseline"),
            is_ninety_day_goal=True,
            dimension_label="queue",
            drilldown="review_items",
        ),
    ]
}

# Upper bounds in seconds of the latency histogram buckets. One more bucket counts the rest.
LATENCY_BOUNDS_SECONDS: tuple[int, ...] = (
    1,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    28800,
    86400,
    172800,
    604800,
)


def histogram_empty() -> list[int]:
    """Return an empty histogram: one zero per bound plus the overflow bucket."""
    return [0] * (len(LATENCY_BOUNDS_SECONDS) + 1)


def histogram_add(histogram: list[int], seconds: float) -> None:
    """Count one observation of `seconds` in place."""
    for index, bound in enumerate(LATENCY_BOUNDS_SECONDS):
        if seconds <= bound:
            histogram[index] += 1
            return
    histogram[-1] += 1


def histogram_merge(histograms: list[list[int]]) -> list[int]:
    """Add histograms bucket by bucket; empty or short lists count as zeros."""
    merged = histogram_empty()
    size = len(merged)
    for histogram in histograms:
        if len(histogram) == size:
            # The usual case, added up in C, because a dashboard page merges thousands.
            merged = list(map(add, merged, histogram))
            continue
        for index, value in enumerate(histogram[:size]):
            merged[index] += value
    return merged


def histogram_percentile(histogram: list[int], fraction: Decimal) -> Decimal | None:
    """Estimate a percentile by linear interpolation inside the bucket that contains it.

    Returns None for an empty histogram. The overflow bucket has no upper bound, so a
    percentile that falls in it is reported as the last bound (an underestimate).
    """
    observations = sum(histogram)
    if observations == 0:
        return None

    rank = fraction * observations
    seen = 0
    for index, in_bucket in enumerate(histogram):
        if in_bucket and seen + in_bucket >= rank:
            if index >= len(LATENCY_BOUNDS_SECONDS):
                return Decimal(LATENCY_BOUNDS_SECONDS[-1])
            lower = Decimal(LATENCY_BOUNDS_SECONDS[index - 1]) if index else Decimal("0")
            upper = Decimal(LATENCY_BOUNDS_SECONDS[index])
            return lower + (upper - lower) * (rank - seen) / in_bucket
        seen += in_bucket
    return Decimal(LATENCY_BOUNDS_SECONDS[-1])


def kpi_get(slug: str) -> Kpi:
    """Return the KPI named `slug`, or raise KeyError listing the known ones."""
    try:
        return KPIS[slug]
    except KeyError:
        raise KeyError(f"Unknown KPI {slug!r}; known: {', '.join(sorted(KPIS))}.") from None


def kpi_choices() -> list[tuple[str, str]]:
    """(slug, name) pairs for forms and the admin."""
    return [(kpi.slug, kpi.name) for kpi in KPIS.values()]
