"""Invented order history for the demo dashboard: 120 days of orders and what followed them.

Only `manage.py seed_demo` calls this. The history gives the KPI dashboard something to show:
orders on the five demo channels, orders held and released in review, AI decisions with
review outcomes and a few labelled errors, shipments, fulfilment exceptions, returns,
chargebacks, channel cancellations and stock counts.

The first BASELINE_DAYS days are the "before" period, with more holds, errors and returns.
The next RAMP_DAYS days improve step by step, and the rest stays improved, so the 90-day
goals have a baseline to beat. In the last CARRIER_SHIFT_DAYS days FedEx takes over much of
USPS's volume, so the carrier-mix alert has a shift to find.

Rows are written with bulk_create and explicit timestamps, not through the services, because
the services stamp the current time. Every row carries HISTORY_MARK in a text, id or JSON
field (orders in `source_name`), and a second run adds nothing.
"""

import json
import logging
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.db.models import Max, Min
from django.utils import timezone

from catalog.models import Channel, Sku
from guardrails.demo import demo_history_facts, demo_history_rules
from guardrails.engine import PolicyRules, evaluate
from guardrails.models import ActionType, Decision, DecisionOutcome, Policy, ReviewOutcome, Verdict
from inventory.models import (
    InventoryDiscrepancy,
    Location,
    StockEvent,
    StockEventKind,
    StockEventOutcome,
)
from orders.models import (
    FULFILMENT_RETURN_REASONS,
    CarrierService,
    Chargeback,
    Delivery,
    DeliveryOutcome,
    FulfilmentException,
    FulfilmentExceptionReason,
    FulfilmentStage,
    Order,
    OrderEvent,
    OrderLine,
    OrderReturn,
    OrderStatus,
    ReturnAttribution,
    ReturnReason,
    Shipment,
    ShipmentStatus,
)
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

from .models import Granularity, KpiRollup
from .selectors import day_floor, hour_floor

logger = logging.getLogger(__name__)

HISTORY_MARK = "demo-history"
HISTORY_MODEL_NAME = "demo-history-agent"
HISTORY_DAYS = 120
BASELINE_DAYS = 30
RAMP_DAYS = 30
CARRIER_SHIFT_DAYS = 3
DAILY_ORDERS = (60, 150)
RANDOM_SEED = 20261205

# Share of orders per channel, and how much more often its orders are cancelled by the
# channel or charged back (marketplaces more, the POS rarely).
CHANNEL_PROFILES = {
    "demo-shop": (0.35, 1.0),
    "demo-amazon": (0.25, 2.5),
    "demo-woo": (0.15, 1.0),
    "demo-ebay": (0.10, 2.0),
    "demo-square": (0.15, 0.3),
}
# (carrier code, service code) of each carrier the history ships with.
CARRIER_SERVICES = {
    "usps": ("usps", "ground_advantage"),
    "ups": ("ups", "ground"),
    "fedex": ("fedex", "ground"),
    "dhl_express": ("dhl_express", "express_worldwide"),
}
DOMESTIC_MIX = {"usps": 0.50, "ups": 0.30, "fedex": 0.20}
SHIFTED_MIX = {"usps": 0.25, "ups": 0.25, "fedex": 0.50}
# (city, province, postcode, country); non-US destinations ship with DHL Express.
DESTINATIONS = [
    ("Austin", "TX", "78701", "US"),
    ("Portland", "OR", "97205", "US"),
    ("Chicago", "IL", "60607", "US"),
    ("Brooklyn", "NY", "11201", "US"),
    ("Denver", "CO", "80202", "US"),
    ("Atlanta", "GA", "30303", "US"),
    ("Seattle", "WA", "98101", "US"),
    ("Toronto", "ON", "M5V 2T6", "CA"),
    ("London", "", "N1 9GU", "GB"),
    ("Osaka", "27", "530-0001", "JP"),
]
DESTINATION_WEIGHTS = [14, 10, 12, 12, 9, 9, 10, 2, 2, 1]
HOLD_KINDS = {
    ReviewKind.UNMAPPED_SKU: "Line 1 has no mapping to a canonical SKU.",
    ReviewKind.ADDRESS: "The shipping address scored below the threshold.",
    ReviewKind.CARRIER_CODE: "The shipping method maps to no carrier service.",
    ReviewKind.OUT_OF_STOCK: "Line 1 is out of stock at every location.",
    ReviewKind.HIGH_VALUE: "The order total is over the escalation limit.",
}
HOLD_KIND_WEIGHTS = [4, 3, 2, 2, 1]
OTHER_RETURN_REASONS = {
    ReturnReason.SIZE_OR_FIT: ReturnAttribution.CUSTOMER,
    ReturnReason.CHANGED_MIND: ReturnAttribution.CUSTOMER,
    ReturnReason.DEFECTIVE: ReturnAttribution.PRODUCT,
    ReturnReason.NOT_AS_DESCRIBED: ReturnAttribution.PRODUCT,
}


# Each rate on the baseline days and once improved. A rate is a chance per order unless its
# comment gives another base. Medians are in the unit their name gives.
RATES: dict[str, tuple[float, float]] = {
    "held": (0.10, 0.025),  # a hygiene check holds the order for review
    "delivery_failed": (0.005, 0.001),  # a delivery beside the order fails processing
    "carrier_decision": (0.15, 0.15),  # the AI picks the carrier (applied on its own)
    "substitution_decision": (0.02, 0.02),  # the AI substitutes a line
    "address_decision": (0.03, 0.012),  # the AI corrects the address (a person approves)
    "audit_sample": (0.10, 0.03),  # per autonomous decision
    "disagreement": (0.09, 0.018),  # per reviewed carrier or address decision
    "substitution_accepted": (0.60, 0.90),  # per substitution a person decided
    "ai_error": (0.015, 0.003),  # per decision applied on its own
    "approved_error": (0.03, 0.03),  # per decision a person approved
    "detect_hours": (30, 4),  # median from apply to the error label
    "remediate_hours": (10, 1.5),  # median from the label to the revert
    "review_minutes": (40, 12),  # median time to approve
    "latency_seconds": (45, 8),  # median from delivery to decision, orders not held
    "fulfilment_exception": (0.008, 0.0012),  # per shipment
    "fulfilment_return": (0.022, 0.005),  # per shipment
    "other_return": (0.05, 0.05),  # per shipment: size, change of mind, defects
    "substitution_return": (0.15, 0.06),  # per shipment of a substituted order
    "corrected_address_failure": (0.12, 0.02),  # per shipment of an address-corrected order
    "duplicate_shipment": (0.003, 0.001),  # per shipment
    "channel_cancellation": (0.005, 0.002),  # times the channel's factor
    "chargeback": (0.004, 0.0015),  # times the channel's factor
    "discrepancy": (0.08, 0.025),  # per stock count
}

Rates = dict[str, float]


def rates_for_day(day: int) -> Rates:
    """Compute the rates of day `day` (0 is the first): the baseline, then a linear ramp."""
    progress = min(max(day - BASELINE_DAYS + 1, 0) / RAMP_DAYS, 1.0)
    return {
        name: baseline + (improved - baseline) * progress
        for name, (baseline, improved) in RATES.items()
    }


@dataclass(frozen=True)
class HistoryStaff:
    """The demo users who decide reviews, label and revert errors, and count stock."""

    agent: AbstractBaseUser
    manager: AbstractBaseUser
    ops: AbstractBaseUser


@dataclass(frozen=True)
class HistoryResult:
    created: bool
    start: datetime
    end: datetime
    counts: dict[str, int]
    seconds: float


def demo_history_period() -> tuple[datetime, datetime] | None:
    """Find the first and last order time of the loaded history, or None without one."""
    period = Order.objects.filter(source_name=HISTORY_MARK).aggregate(
        first=Min("created_at"), last=Max("created_at")
    )
    if period["first"] is None:
        return None
    return period["first"], period["last"]


def demo_history_rolled_up(*, start: datetime) -> bool:
    """Check whether a rollup refresh has covered the history's first day."""
    return KpiRollup.objects.filter(
        counter="orders_received", granularity=Granularity.DAY, bucket_start=day_floor(start)
    ).exists()


def demo_history_load(
    *,
    staff: HistoryStaff,
    now: datetime | None = None,
    days: int = HISTORY_DAYS,
    daily_orders: tuple[int, int] = DAILY_ORDERS,
    seed: int = RANDOM_SEED,
) -> HistoryResult:
    """Write `days` days of history up to the start of the current hour, once.

    Returns the counts of rows written, or created=False with no counts and the existing
    history's period when it is already there. The demo channels, catalog, carriers,
    locations and default policies must exist (seed_demo loads them first). The KPI rollups
    are not refreshed here.
    """
    existing = demo_history_period()
    if existing is not None:
        first, last = existing
        return HistoryResult(created=False, start=first, end=last, counts={}, seconds=0.0)

    end = hour_floor(now or timezone.now())
    start = day_floor(end) - timedelta(days=days)

    began = time.monotonic()
    builder = _HistoryBuilder(world=_World.load(staff=staff, seed=seed), start=start, end=end)
    for day in range(days + 1):
        builder.build_day(day, daily_orders)
    with transaction.atomic(), _explicit_timestamps():
        counts = builder.save()
    seconds = time.monotonic() - began

    logger.info(
        "demo history written",
        extra={"start": start.isoformat(), "end": end.isoformat(), "seconds": round(seconds, 1)},
    )
    return HistoryResult(created=True, start=start, end=end, counts=counts, seconds=seconds)


STAMPED_MODELS = (
    Delivery,
    Order,
    OrderEvent,
    ReviewItem,
    Decision,
    StockEvent,
    InventoryDiscrepancy,
)


@contextmanager
def _explicit_timestamps() -> Iterator[None]:
    """Let bulk_create keep the created_at/received_at values set on each row.

    Fields with auto_now_add overwrite any value with the current time on insert. This turns
    that off for every model while the block runs. NOTE: the change is process-wide, so it is
    safe only in a process that saves nothing else meanwhile, such as seed_demo.
    """
    stamped = [
        field
        for model in STAMPED_MODELS
        for field in model._meta.concrete_fields
        if isinstance(field, models.DateTimeField) and field.auto_now_add
    ]
    for field in stamped:
        field.auto_now_add = False
    try:
        yield
    finally:
        for field in stamped:
            field.auto_now_add = True


@dataclass
class _World:
    """The demo's existing rows the history refers to, and the random generator."""

    rng: random.Random
    channels: list[Channel]
    channel_weights: list[float]
    skus: list[Sku]
    services: dict[str, CarrierService]
    actions: dict[str, ActionType]
    policy_versions: dict[str, int | None]
    policy_rules: dict[str, PolicyRules]
    locations: list[Location]
    staff: HistoryStaff

    @classmethod
    def load(cls, *, staff: HistoryStaff, seed: int) -> "_World":
        channels = list(Channel.objects.filter(code__in=CHANNEL_PROFILES).order_by("code"))
        if not channels:
            raise LookupError("No demo channel exists; run seed_demo, which creates them.")
        action_codes = ["select_carrier", "substitute_sku", "correct_shipping_address"]
        return cls(
            rng=random.Random(seed),  # noqa: S311 - invented demo data, not security
            channels=channels,
            channel_weights=[CHANNEL_PROFILES[channel.code][0] for channel in channels],
            skus=list(Sku.objects.filter(is_active=True).order_by("code")),
            services={
                carrier: CarrierService.objects.get(carrier__code=carrier, code=service)
                for carrier, (carrier, service) in CARRIER_SERVICES.items()
            },
            actions=ActionType.objects.in_bulk(action_codes, field_name="code"),
            policy_versions=dict(
                Policy.objects.filter(action__code__in=action_codes, channel=None).values_list(
                    "action__code", "live_version"
                )
            ),
            policy_rules=demo_history_rules(action_codes),
            locations=list(Location.objects.order_by("code")),
            staff=staff,
        )

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def around(self, median: float, spread: float = 0.8) -> float:
        """Draw from a log-normal distribution with this median: a long tail above it."""
        return median * math.exp(self.rng.gauss(0, spread))


@dataclass
class _OrderFacts:
    """The facts of one order, collected while the order is built."""

    order: Order
    lines: list[OrderLine]
    moment: datetime
    ready_at: datetime
    rates: Rates
    carrier_from: str = ""
    carrier_to: str = ""
    address_corrected: bool = False
    substituted: bool = False


class _HistoryBuilder:
    """Builder of the history's rows: in memory day by day, then saved in dependency order."""

    def __init__(self, *, world: _World, start: datetime, end: datetime) -> None:
        self.world = world
        self.start = start
        self.end = end
        self.sequence = 0
        self.deliveries: list[Delivery] = []
        self.orders: list[Order] = []
        self.lines: list[OrderLine] = []
        self.events: list[OrderEvent] = []
        self.cancellations: list[tuple[OrderEvent, Delivery]] = []
        self.review_items: list[ReviewItem] = []
        self.decisions: list[Decision] = []
        self.shipments: list[Shipment] = []
        self.duplicates: list[Shipment] = []
        self.exceptions: list[FulfilmentException] = []
        self.returns: list[OrderReturn] = []
        self.chargebacks: list[Chargeback] = []
        self.stock_events: list[StockEvent] = []
        self.discrepancies: list[InventoryDiscrepancy] = []

    # Building

    def build_day(self, day: int, daily_orders: tuple[int, int]) -> None:
        rng = self.world.rng
        day_start = self.start + timedelta(days=day)
        rates = rates_for_day(day)
        weekend = day_start.weekday() >= 5
        count = round(rng.randint(*daily_orders) * (0.8 if weekend else 1.0))
        shift_start = self.end - timedelta(days=CARRIER_SHIFT_DAYS)

        for _ in range(count):
            moment = day_start + timedelta(seconds=self._time_of_day())
            if moment >= self.end:
                continue
            self._build_order(moment, rates, shifted=moment >= shift_start)
            if self.world.chance(rates["delivery_failed"]):
                self._build_failed_delivery(moment + timedelta(seconds=5), rates)
        self._build_stock_counts(day_start, rates, count // 3)

    def _time_of_day(self) -> float:
        """Seconds after midnight, busiest in the afternoon and quiet at night."""
        hour = min(max(self.world.rng.gauss(14, 4.5), 0), 23.99)
        return hour * 3600

    def _build_order(self, moment: datetime, rates: Rates, shifted: bool) -> None:
        world = self.world
        self.sequence += 1
        channel = world.rng.choices(world.channels, world.channel_weights)[0]
        order, lines = self._order(channel, moment)
        facts = _OrderFacts(order=order, lines=lines, moment=moment, ready_at=moment, rates=rates)

        self._event(order, "order.received", "Received (demo history).", moment)
        if world.chance(rates["held"]):
            self._hold_and_review(facts)
        else:
            facts.ready_at = moment + timedelta(seconds=world.around(rates["latency_seconds"], 0.7))
        self._decisions(facts, shifted)
        self._event(order, "order.ready", "Ready for fulfilment.", facts.ready_at)

        factor = CHANNEL_PROFILES[channel.code][1]
        if world.chance(rates["channel_cancellation"] * factor):
            self._cancel_by_channel(facts)
            return
        if not order.in_store_pickup:
            self._ship(facts, shifted)
        if world.chance(rates["chargeback"] * factor):
            self._chargeback(facts)

    def _order(self, channel: Channel, moment: datetime) -> tuple[Order, list[OrderLine]]:
        world, number = self.world, self.sequence
        destination = world.rng.choices(DESTINATIONS, DESTINATION_WEIGHTS)[0]
        pickup = channel.code == "demo-square" and world.chance(0.5)
        delivery = self._delivery(channel, f"{number}", moment - timedelta(seconds=1))

        picks = [
            (world.rng.choice(world.skus), world.rng.choice([1, 1, 1, 2]))
            for _ in range(world.rng.choice([1, 1, 1, 2, 2, 3]))
        ]
        subtotal = sum((sku.price * quantity for sku, quantity in picks), Decimal("0"))
        shipping = Decimal("0") if pickup or subtotal >= 75 else Decimal("5.99")
        order = Order(
            channel=channel,
            channel_order_id=f"{HISTORY_MARK}-{number}",
            order_number=f"#H{number:05d}",
            source_name=HISTORY_MARK,
            delivery=delivery,
            status=OrderStatus.READY,
            currency="USD",
            subtotal=subtotal,
            shipping_total=shipping,
            tax_total=Decimal("0"),
            discount_total=Decimal("0"),
            total=subtotal + shipping,
            customer_email=f"customer{number % 4000}@example.com",
            customer_name=f"Demo Customer {number % 4000}",
            in_store_pickup=pickup,
            shipping_address=_address(destination),
            address_score=Decimal("0.96"),
            placed_at=moment - timedelta(seconds=30),
            created_at=moment,
        )

        lines = [
            OrderLine(
                order=order,
                position=position,
                channel_sku=sku.code,
                title=sku.title,
                quantity=quantity,
                unit_price=sku.price,
                sku=sku,
                raw={"sku": sku.code, "quantity": quantity, "source": HISTORY_MARK},
            )
            for position, (sku, quantity) in enumerate(picks, start=1)
        ]
        self.orders.append(order)
        self.lines.extend(lines)
        return order, lines

    def _delivery(self, channel: Channel, suffix: str, received_at: datetime) -> Delivery:
        """Add a processed delivery whose id ends in `suffix`."""
        delivery = Delivery(
            channel=channel,
            delivery_id=f"{HISTORY_MARK}-{suffix}",
            topic=HISTORY_MARK,
            headers={},
            body=json.dumps({"source": HISTORY_MARK, "delivery": suffix}).encode(),
            signature_valid=True,
            received_at=received_at,
            processed_at=received_at,
            outcome=DeliveryOutcome.PROCESSED,
            attempts=1,
            processed_by=HISTORY_MARK,
        )
        self.deliveries.append(delivery)
        return delivery

    def _event(self, order: Order, kind: str, message: str, moment: datetime, **data) -> OrderEvent:
        event = OrderEvent(
            order=order,
            kind=kind,
            message=message,
            actor_kind="system",
            data={"source": HISTORY_MARK, **data},
            created_at=moment,
        )
        self.events.append(event)
        return event

    def _hold_and_review(self, facts: _OrderFacts) -> None:
        world = self.world
        kind = world.rng.choices(list(HOLD_KINDS), HOLD_KIND_WEIGHTS)[0]
        held_at = facts.moment + timedelta(seconds=2)
        self._event(facts.order, "order.held", f"Held: {HOLD_KINDS[kind]}", held_at)
        item = self._review_item(
            facts, kind, HOLD_KINDS[kind], held_at, accepted=world.chance(0.95)
        )
        facts.ready_at = item.decided_at + timedelta(seconds=1)

    def _review_item(
        self,
        facts: _OrderFacts,
        kind: str,
        reason: str,
        opened_at: datetime,
        *,
        accepted: bool,
        decision: Decision | None = None,
    ) -> ReviewItem:
        """Add a review item a person decided, after a time drawn around the day's median."""
        world = self.world
        minutes = world.around(facts.rates["review_minutes"], 1.0)
        decided_at = opened_at + timedelta(minutes=minutes)
        manager_queue = kind in (ReviewKind.ADDRESS, ReviewKind.HIGH_VALUE)
        item = ReviewItem(
            kind=kind,
            status=ReviewStatus.ACCEPTED if accepted else ReviewStatus.REJECTED,
            order=facts.order,
            reason=f"{reason} ({HISTORY_MARK})",
            source_data={"source": HISTORY_MARK},
            created_at=opened_at,
            decided_at=decided_at,
            decided_by=world.staff.manager if manager_queue else world.staff.agent,
            decision={"accepted": accepted, "source": HISTORY_MARK},
            decision_note=HISTORY_MARK,
            approver_group="cs_manager" if manager_queue else "",
            order_version=1,
            due_at=opened_at + timedelta(minutes=30 if kind == ReviewKind.ADDRESS else 60),
            sla_minutes=30 if kind == ReviewKind.ADDRESS else 60,
        )
        if decision is not None:
            item.action_code = decision.action.code
            item.confidence = decision.confidence
            decision.review_item = item
        self.review_items.append(item)
        return item

    def _decisions(self, facts: _OrderFacts, shifted: bool) -> None:
        world, rates = self.world, facts.rates
        # A pickup order ships with no carrier, and the engine blocks choosing one for it.
        if world.chance(rates["carrier_decision"]) and not facts.order.in_store_pickup:
            self._carrier_decision(facts, shifted)
        if world.chance(rates["substitution_decision"]):
            # The live policy lets items under USD 25 with a confident proposal run on their own.
            self._decision(facts, "substitute_sku", confident=world.chance(0.4))
        if world.chance(rates["address_decision"]):
            self._decision(facts, "correct_shipping_address", confident=False)

    def _carrier_decision(self, facts: _OrderFacts, shifted: bool) -> None:
        mix = SHIFTED_MIX if shifted else DOMESTIC_MIX
        facts.carrier_from = "usps"
        facts.carrier_to = self.world.rng.choices(list(mix), list(mix.values()))[0]
        if facts.carrier_to == facts.carrier_from:
            facts.carrier_to = "fedex" if shifted else "ups"
        self._decision(facts, "select_carrier", confident=True)

    def _decision(self, facts: _OrderFacts, action: str, *, confident: bool) -> None:
        """Add a proposal judged by the live policy on the facts decision_propose would store.

        A confident proposal's confidence is drawn above the default policies' limits (0.92 for
        substitutions, 0.85 for carriers).
        """
        world, rates = self.world, facts.rates
        created_at = facts.moment + timedelta(seconds=world.rng.uniform(3, 60))
        confidence = Decimal(str(round(world.rng.uniform(0.93 if confident else 0.7, 0.99), 4)))
        after = _proposal_state(action, facts, before=False)
        model_version = self._model_version(facts.moment)
        decision_facts = demo_history_facts(
            action_code=action,
            order=facts.order,
            lines=facts.lines,
            after=after,
            confidence=confidence,
            model_name=HISTORY_MODEL_NAME,
            model_version=model_version,
            decided_at=created_at,
        )
        evaluation = evaluate(rules=world.policy_rules.get(action), facts=decision_facts)
        autonomous = evaluation.verdict == Verdict.APPLIED
        decision = Decision(
            action=world.actions[action],
            order=facts.order,
            channel=facts.order.channel,
            model_name=HISTORY_MODEL_NAME,
            model_version=model_version,
            before=_proposal_state(action, facts, before=True),
            after=after,
            confidence=confidence,
            rationale=f"{HISTORY_MARK}: invented proposal",
            verdict=evaluation.verdict,
            reasons=evaluation.reasons,
            policy_version_id=world.policy_versions.get(action),
            facts=decision_facts,
            created_at=created_at,
        )
        self.decisions.append(decision)

        if autonomous:
            decision.applied_at = created_at + timedelta(seconds=1)
            if world.chance(rates["audit_sample"]):
                self._reviewed(facts, decision, ReviewKind.AUDIT_SAMPLE, created_at)
        else:
            # The order waits while a person decides, whatever they decide.
            item = self._reviewed(facts, decision, decision.action.review_kind, created_at)
            facts.ready_at = max(facts.ready_at, item.decided_at + timedelta(seconds=1))
        if decision.applied_at:
            facts.substituted |= action == "substitute_sku"
            facts.address_corrected |= action == "correct_shipping_address"
            self._maybe_error(decision, rates)

    def _reviewed(
        self, facts: _OrderFacts, decision: Decision, kind: str, opened_at: datetime
    ) -> ReviewItem:
        """Record a person agreeing with the decision or rejecting it.

        Agreeing applies a queued decision.
        """
        rates = facts.rates
        disagreement = rates["disagreement"]
        if decision.action.code == "substitute_sku":
            disagreement = 1 - rates["substitution_accepted"]
        agreed = not self.world.chance(disagreement)
        reason = f"AI proposal: {decision.action.name}"
        item = self._review_item(facts, kind, reason, opened_at, accepted=agreed, decision=decision)
        decision.review_outcome = ReviewOutcome.AGREED if agreed else ReviewOutcome.DISAGREED
        decision.reviewed_at = item.decided_at
        if agreed and decision.applied_at is None:
            decision.applied_at = item.decided_at + timedelta(seconds=1)
        return item

    def _maybe_error(self, decision: Decision, rates: Rates) -> None:
        """Label some applied decisions an error, detected and reverted after a while."""
        world = self.world
        autonomous = decision.verdict == Verdict.APPLIED
        # The autonomy gate suspends an action once 0.2 % of its autonomous decisions of the
        # last 30 days are errors. Recent errors therefore go only to decisions a person
        # approved, so the gates stay open and the demo proposals keep their verdicts.
        if autonomous and decision.created_at >= self.end - timedelta(days=31):
            return
        if not world.chance(rates["ai_error" if autonomous else "approved_error"]):
            return

        labelled_at = decision.applied_at + timedelta(
            hours=world.around(rates["detect_hours"], 0.6)
        )
        reverted_at = labelled_at + timedelta(hours=world.around(rates["remediate_hours"], 0.6))
        if reverted_at >= self.end:
            return
        decision.outcome = DecisionOutcome.ERROR
        decision.labelled_at = labelled_at
        decision.labelled_by = world.staff.manager
        decision.label_note = f"{HISTORY_MARK}: the change had to be undone"
        decision.reverted_at = reverted_at
        decision.reverted_by = world.staff.manager

    def _model_version(self, moment: datetime) -> str:
        """Name the model version: one for the baseline period, a newer one after it."""
        release = self.start
        if moment >= self.start + timedelta(days=BASELINE_DAYS):
            release = self.start + timedelta(days=BASELINE_DAYS)
        return f"{release:%Y-%m-%d}"

    def _cancel_by_channel(self, facts: _OrderFacts) -> None:
        order = facts.order
        cancelled_at = facts.ready_at + timedelta(hours=self.world.rng.uniform(0.5, 12))
        if cancelled_at >= self.end:
            return
        order.status = OrderStatus.CANCELLED
        update = self._delivery(order.channel, f"{self.sequence}-cancel", cancelled_at)
        event = self._event(order, "order.cancelled", "Cancelled by the channel.", cancelled_at)
        self.cancellations.append((event, update))

    def _ship(self, facts: _OrderFacts, shifted: bool) -> None:
        world, rates, order = self.world, facts.rates, facts.order
        shipped_at = facts.ready_at + timedelta(hours=world.rng.uniform(2, 30))
        if shipped_at >= self.end:
            return
        carrier = self._carrier(facts, shifted)
        order.carrier_service = world.services[carrier]
        status, changed_at = ShipmentStatus.DELIVERED, shipped_at + timedelta(days=3)
        if facts.address_corrected and world.chance(rates["corrected_address_failure"]):
            status = world.rng.choice(
                [ShipmentStatus.DELIVERY_FAILED, ShipmentStatus.RETURNED_TO_SENDER]
            )
        if changed_at >= self.end:
            status, changed_at = ShipmentStatus.SHIPPED, None
        shipment = Shipment(
            order=order,
            channel=order.channel,
            shipment_id=f"{HISTORY_MARK}-{self.sequence}-1",
            carrier_service=world.services[carrier],
            carrier_code=carrier,
            tracking_number=f"DEMO{self.sequence:010d}",
            lines=[{"sku": line.channel_sku, "quantity": line.quantity} for line in facts.lines],
            shipped_at=shipped_at,
            status=status,
            status_changed_at=changed_at,
            address_corrected=facts.address_corrected,
        )
        self.shipments.append(shipment)
        if world.chance(rates["duplicate_shipment"]):
            self._duplicate(shipment)
        if world.chance(rates["fulfilment_exception"]):
            self._fulfilment_exception(shipment)
        self._returns(facts, shipment)

    def _carrier(self, facts: _OrderFacts, shifted: bool) -> str:
        if facts.order.shipping_address["country_code"] != "US":
            return "dhl_express"
        if facts.carrier_to:
            return facts.carrier_to
        mix = SHIFTED_MIX if shifted else DOMESTIC_MIX
        return self.world.rng.choices(list(mix), list(mix.values()))[0]

    def _duplicate(self, original: Shipment) -> None:
        self.duplicates.append(
            Shipment(
                order=original.order,
                channel=original.channel,
                shipment_id=f"{original.shipment_id}-again",
                carrier_service=original.carrier_service,
                carrier_code=original.carrier_code,
                tracking_number=f"{original.tracking_number}D",
                lines=original.lines,
                shipped_at=original.shipped_at + timedelta(hours=2),
                status=original.status,
                status_changed_at=original.status_changed_at,
                is_duplicate=True,
                duplicate_of=original,
            )
        )

    def _fulfilment_exception(self, shipment: Shipment) -> None:
        rng = self.world.rng
        stage = rng.choice(list(FulfilmentStage))
        reasons = {
            FulfilmentStage.PICK: [FulfilmentExceptionReason.WRONG_ITEM],
            FulfilmentStage.PACK: [
                FulfilmentExceptionReason.WRONG_QUANTITY,
                FulfilmentExceptionReason.MISSING_ITEM,
            ],
            FulfilmentStage.SHIP: [
                FulfilmentExceptionReason.WRONG_CARRIER,
                FulfilmentExceptionReason.LATE,
            ],
        }[stage]
        self.exceptions.append(
            FulfilmentException(
                order=shipment.order,
                channel=shipment.channel,
                shipment=shipment,
                stage=stage,
                reason=rng.choice(reasons),
                note=HISTORY_MARK,
                occurred_at=shipment.shipped_at - timedelta(minutes=rng.uniform(5, 90)),
            )
        )

    def _returns(self, facts: _OrderFacts, shipment: Shipment) -> None:
        world, rates = self.world, facts.rates
        if facts.substituted and world.chance(rates["substitution_return"]):
            reason, attribution = ReturnReason.SUBSTITUTE_UNWANTED, ReturnAttribution.SUBSTITUTION
        elif world.chance(rates["fulfilment_return"]):
            reason = world.rng.choice(sorted(FULFILMENT_RETURN_REASONS))
            attribution = ReturnAttribution.FULFILMENT
        elif world.chance(rates["other_return"]):
            reason = world.rng.choice(list(OTHER_RETURN_REASONS))
            attribution = OTHER_RETURN_REASONS[reason]
        else:
            return
        received_at = shipment.shipped_at + timedelta(days=world.rng.uniform(3, 12))
        if received_at >= self.end:
            return
        self.returns.append(
            OrderReturn(
                order=facts.order,
                channel=facts.order.channel,
                return_id=f"{HISTORY_MARK}-{self.sequence}",
                reason=reason,
                attributed_to=attribution,
                involves_substitution=reason == ReturnReason.SUBSTITUTE_UNWANTED,
                lines=shipment.lines[:1],
                note=HISTORY_MARK,
                received_at=received_at,
            )
        )

    def _chargeback(self, facts: _OrderFacts) -> None:
        received_at = facts.moment + timedelta(days=self.world.rng.uniform(5, 20))
        if received_at >= self.end:
            return
        self.chargebacks.append(
            Chargeback(
                order=facts.order,
                channel=facts.order.channel,
                chargeback_id=f"{HISTORY_MARK}-{self.sequence}",
                amount=facts.order.total,
                currency=facts.order.currency,
                reason=self.world.rng.choice(
                    ["item_not_received", "fraudulent", "not_as_described"]
                ),
                received_at=received_at,
            )
        )

    def _build_failed_delivery(self, moment: datetime, rates: Rates) -> None:
        world = self.world
        self.sequence += 1
        channel = world.rng.choices(world.channels, world.channel_weights)[0]
        delivery = self._delivery(channel, f"{self.sequence}-failed", moment)
        delivery.outcome = DeliveryOutcome.FAILED
        delivery.error = f"{HISTORY_MARK}: the payload has no line items"
        minutes = world.around(rates["review_minutes"] * 2, 1.0)
        self.review_items.append(
            ReviewItem(
                kind=ReviewKind.DELIVERY_FAILED,
                status=ReviewStatus.REJECTED,
                delivery=delivery,
                reason=f"The delivery could not be processed ({HISTORY_MARK}).",
                source_data={"source": HISTORY_MARK},
                created_at=moment,
                decided_at=moment + timedelta(minutes=minutes),
                decided_by=world.staff.agent,
                decision={"dismissed": True, "source": HISTORY_MARK},
                decision_note=HISTORY_MARK,
            )
        )

    def _build_stock_counts(self, day_start: datetime, rates: Rates, count: int) -> None:
        """Record physical counts; a count that differs also gets its correcting stock event.

        Like inventory.services.discrepancy_record, every count is a discrepancy row, a
        matching one with difference 0, so the discrepancy rate has its denominator.
        """
        world = self.world
        if not world.locations:
            return
        for _ in range(count):
            counted_at = day_start + timedelta(hours=7, minutes=world.rng.uniform(0, 600))
            if counted_at >= self.end:
                continue
            expected = world.rng.randint(4, 30)
            counted = expected
            if world.chance(rates["discrepancy"]):
                counted = max(expected + world.rng.choice([-3, -2, -1, 1, 2]), 0)
            discrepancy = InventoryDiscrepancy(
                sku=world.rng.choice(world.skus),
                location=world.rng.choice(world.locations),
                expected=expected,
                counted=counted,
                difference=counted - expected,
                reported_by=world.staff.ops,
                note=HISTORY_MARK,
                created_at=counted_at,
            )
            if counted != expected:
                discrepancy.correction = self._stock_correction(discrepancy)
            self.discrepancies.append(discrepancy)

    def _stock_correction(self, discrepancy: InventoryDiscrepancy) -> StockEvent:
        event = StockEvent(
            source=HISTORY_MARK,
            event_id=f"count-{len(self.stock_events) + 1}",
            sku=discrepancy.sku,
            location=discrepancy.location,
            kind=StockEventKind.ABSOLUTE,
            quantity=discrepancy.counted,
            version=1,
            occurred_at=discrepancy.created_at,
            received_at=discrepancy.created_at,
            outcome=StockEventOutcome.APPLIED,
            on_hand_before=discrepancy.expected,
            on_hand_after=discrepancy.counted,
        )
        self.stock_events.append(event)
        return event

    # Saving

    def save(self) -> dict[str, int]:
        """Insert every row, parents first, so each child's foreign key gets its parent's id."""
        Delivery.objects.bulk_create(self.deliveries, batch_size=500)
        for event, update in self.cancellations:
            event.data["delivery"] = update.pk
        Order.objects.bulk_create(self.orders, batch_size=500)
        OrderLine.objects.bulk_create(self.lines, batch_size=500)
        OrderEvent.objects.bulk_create(self.events, batch_size=500)
        ReviewItem.objects.bulk_create(self.review_items, batch_size=500)
        for decision in self.decisions:
            # The facts were built before the orders had ids.
            decision.facts["order"]["id"] = decision.order.pk
        Decision.objects.bulk_create(self.decisions, batch_size=500)
        Shipment.objects.bulk_create(self.shipments, batch_size=500)
        Shipment.objects.bulk_create(self.duplicates, batch_size=500)
        FulfilmentException.objects.bulk_create(self.exceptions, batch_size=500)
        OrderReturn.objects.bulk_create(self.returns, batch_size=500)
        Chargeback.objects.bulk_create(self.chargebacks, batch_size=500)
        StockEvent.objects.bulk_create(self.stock_events, batch_size=500)
        InventoryDiscrepancy.objects.bulk_create(self.discrepancies, batch_size=500)
        return {
            "orders": len(self.orders),
            "review_items": len(self.review_items),
            "decisions": len(self.decisions),
            "shipments": len(self.shipments) + len(self.duplicates),
            "fulfilment_exceptions": len(self.exceptions),
            "returns": len(self.returns),
            "chargebacks": len(self.chargebacks),
            "stock_counts": len(self.discrepancies),
        }


def _address(destination: tuple[str, str, str, str]) -> dict:
    city, province, postcode, country = destination
    return {
        "address1": "1 Demo Street",
        "city": city,
        "province_code": province,
        "zip": postcode,
        "country_code": country,
    }


def _proposal_state(action: str, facts: _OrderFacts, *, before: bool) -> dict:
    """Build the before or after state of an invented proposal, in the action's shape."""
    if action == "select_carrier":
        carrier = facts.carrier_from if before else facts.carrier_to
        return {"carrier_service": "/".join(CARRIER_SERVICES[carrier])}
    if action == "substitute_sku":
        line = facts.lines[0]
        sku = line.channel_sku if before else f"{line.channel_sku.rsplit('-', 1)[0]}-ALT"
        return {"line": 1, "sku": sku}
    address = dict(facts.order.shipping_address)
    if before:
        address["zip"] = address["zip"][:-1]
    return {"shipping_address": address}
