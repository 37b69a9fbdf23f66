"""Every shipped default rule: it fires on traffic of a mid-size shop, its button changes
something real, and its alert resolves when the condition clears.

A mid-size shop here takes about 100 orders a day on a channel. Each scenario writes the KPI
rollups, plus the real orders, decisions and review items its remediation acts on. It
evaluates only its own rule at NOW and presses the remediation through the service as the
rule's owner would. Then it checks the effect and writes rollups that clear the condition.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import User

from guardrails.models import Breaker, BreakerScope, BreakerState, Verdict
from guardrails.services import decision_propose
from monitoring.alerting import alert_rules_evaluate
from monitoring.models import Alert, AlertRule, AlertStatus, Granularity, KpiRollup
from monitoring.services import alert_remediate
from orders.channel_holds import CHANNEL_HELD
from orders.models import Order
from reviews.models import ReviewItem, ReviewKind
from tests.conftest import as_body, make_user, order_payload, signed_headers
from tests.guardrails.conftest import default_policies  # noqa: F401
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)
from tests.reviews.conftest import WRONG_ZIP_ADDRESS

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 10, 5, tzinfo=UTC)
HOUR_9 = datetime(2026, 3, 10, 9, tzinfo=UTC)
HOUR_10 = datetime(2026, 3, 10, 10, tzinfo=UTC)
# A day inside the 7-day baseline of a 24-hour window evaluated at NOW.
BASELINE_DAY = datetime(2026, 3, 6, tzinfo=UTC)


def rollup(counter: str, at: datetime, count: int, *, channel: str = "shop", **fields) -> None:
    granularity = fields.pop("granularity", Granularity.HOUR)
    KpiRollup.objects.create(
        counter=counter,
        granularity=granularity,
        bucket_start=at,
        channel=channel,
        count=count,
        **fields,
    )


def spread_over_day(counter: str, total: int, **fields) -> None:
    """Write `total` events spread evenly over the 24 hours up to and including 09:00."""
    per_hour, extra = divmod(total, 24)
    for index in range(24):
        count = per_hour + (1 if index < extra else 0)
        if count:
            rollup(counter, HOUR_9 - timedelta(hours=23 - index), count, **fields)


# --- What a remediation changed -----------------------------------------------------------------


def carrier_proposal(order: Order, before: str, after: str):
    return decision_propose(
        order_id=order.pk,
        action_code="select_carrier",
        before={"carrier_service": before},
        after={"carrier_service": after},
        confidence=Decimal("0.95"),
        model_name="gpt-route",
        model_version="7",
    )


def carrier_choice_applied(request) -> None:
    order = request.getfixturevalue("order")
    assert carrier_proposal(order, "ups/ground", "fedex/ground").verdict == Verdict.APPLIED


def carrier_choice_queued(request) -> None:
    breaker = Breaker.objects.get(scope=BreakerScope.ACTION, key="select_carrier")
    assert breaker.state == BreakerState.OPEN

    order = request.getfixturevalue("order")
    decision = carrier_proposal(order, "fedex/ground", "ups/ground")
    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW


def new_order_reasons(request, order_id: int) -> list[str]:
    post_webhook = request.getfixturevalue("post_webhook")
    body = as_body(order_payload(order_id=order_id))
    response = post_webhook(body, signed_headers(body, webhook_id=f"wh-{order_id}"))
    assert response.status_code == 200, response.content
    order = Order.objects.get(channel_order_id=str(order_id))
    return [reason["code"] for reason in order.hold_reasons]


def new_order_not_held(request) -> None:
    request.getfixturevalue("catalog")
    assert CHANNEL_HELD not in new_order_reasons(request, 700001)


def new_order_held(request) -> None:
    assert CHANNEL_HELD in new_order_reasons(request, 700002)


def address_items_overdue(request) -> None:
    post_webhook = request.getfixturevalue("post_webhook")
    request.getfixturevalue("catalog")
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    ReviewItem.objects.filter(kind=ReviewKind.ADDRESS).update(
        created_at=NOW - timedelta(minutes=45)
    )
    assert not ReviewItem.objects.filter(kind=ReviewKind.ADDRESS, escalated_at__isnull=False)


def substitution_items_overdue(request) -> None:
    order = request.getfixturevalue("order")
    decision = decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence=Decimal("0.5"),
        model_name="gpt-sub",
        model_version="2024-06",
    )
    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    ReviewItem.objects.filter(kind=ReviewKind.SUBSTITUTION).update(
        created_at=NOW - timedelta(hours=2)
    )


def items_escalated(kind: str) -> Callable:
    def check(request) -> None:
        items = ReviewItem.objects.filter(kind=kind)
        assert items.exists()
        assert set(items.values_list("escalated_to", "escalated_at")) == {("cs_manager", NOW)}

    return check


# --- The rollups that fire each rule and clear it again ----------------------------------------


def duplicates_fire() -> None:
    spread_over_day("orders_received", 100)
    rollup("duplicate_shipments", HOUR_9, 1)  # 10 per 1,000 orders


def duplicates_clear() -> None:
    rollup("orders_received", HOUR_10, 200)  # 1 in 300 orders: 3.3 per 1,000


def carrier_mix_fire() -> None:
    for carrier, count in {"usps": 400, "ups": 300, "fedex": 200, "dhl": 100}.items():
        rollup("shipments", BASELINE_DAY, count, dimension=carrier, granularity=Granularity.DAY)
    # FedEx takes most of USPS's volume: a day of 5 channels of 100 shipments each.
    for carrier, count in {"usps": 30, "ups": 150, "fedex": 270, "dhl": 50}.items():
        spread_over_day("shipments", count, dimension=carrier)


def carrier_mix_clear() -> None:
    # A large backlog ships at the usual mix and outweighs the shifted day.
    for carrier, count in {"usps": 4000, "ups": 3000, "fedex": 2000, "dhl": 1000}.items():
        rollup("shipments", HOUR_10, count, dimension=carrier)


def disagreement_fire() -> None:
    # A week of reviews of carrier choices, 10 a day: 5 of 60 rejected or revised.
    for day in range(6):
        at = datetime(2026, 3, 4, tzinfo=UTC) + timedelta(days=day)
        fields = {"dimension": "select_carrier", "granularity": Granularity.DAY}
        rollup("reviewed_decisions", at, 10, **fields)
        if day == 4:
            rollup("disagreements", at, 5, **fields)


def disagreement_clear() -> None:
    rollup("reviewed_decisions", HOUR_10, 300, dimension="select_carrier")  # 5 of 360


def fulfilment_errors_fire() -> None:
    spread_over_day("shipments", 100, dimension="ups")
    rollup("fulfilment_exceptions", HOUR_9, 1, dimension="pick")  # 1 %


def fulfilment_errors_clear() -> None:
    rollup("shipments", HOUR_10, 500, dimension="ups")  # 1 in 600: 0.17 %


def queue_snapshot(queue: str, age_seconds: int) -> Callable:
    """The rollup refresh's snapshot of the current hour: one item open for `age_seconds`."""

    def write() -> None:
        rollup("queue_open", HOUR_10, 1, channel="", dimension=queue, total=Decimal(age_seconds))

    return write


def queue_empty(queue: str) -> Callable:
    def write() -> None:
        rollup("queue_open", HOUR_10 + timedelta(hours=1), 0, channel="", dimension=queue)

    return write


def cancellations_fire() -> None:
    rollup("orders_received", BASELINE_DAY, 700, granularity=Granularity.DAY)
    rollup("channel_cancellations", BASELINE_DAY, 7, granularity=Granularity.DAY)  # 10 per 1,000
    spread_over_day("orders_received", 100)
    rollup("channel_cancellations", HOUR_9, 3)  # 30 per 1,000


def cancellations_clear() -> None:
    rollup("orders_received", HOUR_10, 200)  # 3 in 300: 10 per 1,000, as in the baseline


def chargebacks_fire() -> None:
    rollup("orders_received", BASELINE_DAY, 700, granularity=Granularity.DAY)
    spread_over_day("orders_received", 100)
    rollup("chargebacks", HOUR_9, 1)  # the first in 8 days


def chargebacks_clear() -> None:
    # A day later the chargeback belongs to the baseline, and the new day has none.
    rollup("orders_received", HOUR_10 + timedelta(days=1), 100)


def order_errors_fire() -> None:
    spread_over_day("orders_received", 100)
    rollup("order_errors", HOUR_9, 2)  # 200 per 10,000


def order_errors_clear() -> None:
    rollup("orders_received", HOUR_10, 200)  # 2 in 300: 67 per 10,000


@dataclass(frozen=True)
class Scenario:
    fire: Callable[[], None]
    clear: Callable[[], None]
    # Facts the remediation acts on, with a check that nothing was changed yet.
    before: Callable
    effect: Callable
    clear_after: timedelta = timedelta(minutes=30)


SCENARIOS = {
    "Duplicate shipments above 5 per 1,000 orders": Scenario(
        duplicates_fire, duplicates_clear, new_order_not_held, new_order_held
    ),
    "Carrier mix more than 30 % off its 7-day baseline": Scenario(
        carrier_mix_fire, carrier_mix_clear, carrier_choice_applied, carrier_choice_queued
    ),
    "Disagreement rate above 2 %": Scenario(
        disagreement_fire, disagreement_clear, carrier_choice_applied, carrier_choice_queued
    ),
    "Fulfilment error rate above 0.2 %": Scenario(
        fulfilment_errors_fire, fulfilment_errors_clear, new_order_not_held, new_order_held
    ),
    "Address queue: oldest item older than 30 minutes": Scenario(
        queue_snapshot("address", 2700),
        queue_empty("address"),
        address_items_overdue,
        items_escalated(ReviewKind.ADDRESS),
        clear_after=timedelta(hours=1),
    ),
    "Substitution queue: oldest item older than 60 minutes": Scenario(
        queue_snapshot("substitution", 7200),
        queue_empty("substitution"),
        substitution_items_overdue,
        items_escalated(ReviewKind.SUBSTITUTION),
        clear_after=timedelta(hours=1),
    ),
    "Marketplace cancellations 50 % above their 7-day baseline": Scenario(
        cancellations_fire, cancellations_clear, carrier_choice_applied, carrier_choice_queued
    ),
    "Marketplace chargebacks 50 % above their 7-day baseline": Scenario(
        chargebacks_fire,
        chargebacks_clear,
        carrier_choice_applied,
        carrier_choice_queued,
        clear_after=timedelta(days=1),
    ),
    "Order processing errors above 100 per 10,000 orders": Scenario(
        order_errors_fire, order_errors_clear, new_order_not_held, new_order_held
    ),
}


@pytest.fixture
def owners(db) -> dict[str, User]:
    return {
        "ops_manager": make_user("olivia", "ops_manager"),
        "cs_manager": make_user("morgan", "cs_manager"),
    }


def test_every_default_rule_has_scenario():
    assert set(AlertRule.objects.values_list("name", flat=True)) == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_default_rule_fires_remediates_resolves(name, request, owners, default_policies):  # noqa: F811
    scenario = SCENARIOS[name]
    rule = AlertRule.objects.select_related("owner_group").get(name=name)
    AlertRule.objects.exclude(pk=rule.pk).update(is_enabled=False)

    with time_machine.travel(NOW, tick=False):
        scenario.fire()
        scenario.before(request)
        fired = alert_rules_evaluate(now=NOW)
        alert = Alert.objects.get(rule=rule)
        assert fired.opened == [alert.pk], alert.title

        alert_remediate(alert_id=alert.pk, user=owners[rule.owner_group.name])
        scenario.effect(request)

    later = NOW + scenario.clear_after
    with time_machine.travel(later, tick=False):
        scenario.clear()
        cleared = alert_rules_evaluate(now=later)

    alert.refresh_from_db()
    assert cleared.resolved == [alert.pk]
    assert alert.status == AlertStatus.RESOLVED
    assert alert.resolution.startswith("Cleared: "), alert.resolution
