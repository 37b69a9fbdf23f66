"""Review deadlines: which SLA an item gets, DST-proof deadlines, and the SLA sweep."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.template import Context, Template
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from guardrails.models import AuditEntry, GuardrailSettings
from orders.models import OrderEvent, OrderStatus
from reviews.models import ReviewItem, ReviewKind
from reviews.services import review_item_may_decide
from reviews.sla import review_items_sla_sweep, review_sla_for
from reviews.tasks import review_items_sla_sweep as sweep_task
from tests.conftest import as_body, make_user, order_payload
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
)
from tests.reviews.conftest import SUBSTITUTION, WRONG_ZIP_ADDRESS, propose

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")


# --- Which SLA ------------------------------------------------------------------------------


def test_address_items_take_the_address_policy(policies):
    sla = review_sla_for(kind=ReviewKind.ADDRESS)

    assert (sla.minutes, sla.on_breach, sla.approver_group) == (30, "hold_order", "cs_manager")


def test_out_of_stock_items_take_the_substitution_policy(policies):
    sla = review_sla_for(kind=ReviewKind.OUT_OF_STOCK)

    assert (sla.minutes, sla.on_breach, sla.escalation_group) == (60, "escalate", "cs_manager")


def test_ai_items_take_their_action_policy(policies):
    sla = review_sla_for(kind=ReviewKind.ROUTING, action_code="select_carrier")

    assert (sla.minutes, sla.on_breach, sla.approver_group) == (60, "escalate", "cs_agent")


def test_other_items_take_the_settings_default(policies):
    GuardrailSettings.objects.update_or_create(pk=1, defaults={"review_default_sla_minutes": 90})

    sla = review_sla_for(kind=ReviewKind.UNMAPPED_SKU)

    assert (sla.minutes, sla.on_breach, sla.escalation_group) == (90, "hold_order", "")


def test_new_address_item_gets_version_deadline_and_approver(address_item, address_order):
    assert address_item.order_version == address_order.version
    assert address_item.sla_minutes == 30
    assert address_item.on_sla_breach == "hold_order"
    assert address_item.due_at - address_item.created_at == pytest.approx(
        timedelta(minutes=30), abs=timedelta(seconds=1)
    )
    assert address_item.approver_group == "cs_manager"


def test_unmapped_sku_item_has_no_approver(policies, channel, catalog, post_webhook):
    lines = [{"id": 1, "sku": "NOT-MAPPED", "title": "Mystery", "quantity": 1, "price": "5.00"}]
    post_webhook(as_body(order_payload(line_items=lines)))

    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)
    assert item.approver_group == ""
    assert item.sla_minutes == 240
    assert item.order_version == 1


def test_queued_decision_item_copies_the_judging_version(order):
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    item = decision.review_item
    assert item.action_code == "substitute_sku"
    assert item.confidence == Decimal("0.5000")
    assert item.approver_group == "cs_agent"
    assert (item.sla_minutes, item.on_sla_breach) == (60, "escalate")
    assert item.order_version == order.version


# --- Deadlines across a daylight-saving change ----------------------------------------------


def test_deadline_across_spring_forward_is_thirty_real_minutes(
    settings, channel, catalog, policies, post_webhook
):
    settings.TIME_ZONE = "America/New_York"
    # 01:50 EST on the night clocks jump from 02:00 to 03:00.
    opened = datetime(2026, 3, 8, 1, 50, tzinfo=NEW_YORK)
    with time_machine.travel(opened, tick=False):
        post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))

    item = ReviewItem.objects.get(kind=ReviewKind.ADDRESS)
    assert item.due_at == datetime(2026, 3, 8, 7, 20, tzinfo=UTC)
    assert item.due_at - item.created_at == timedelta(minutes=30)
    with timezone.override(NEW_YORK):
        local = timezone.localtime(item.due_at)
        rendered = Template('{{ due|date:"Y-m-d H:i T" }}').render(Context({"due": item.due_at}))
    # A naive local sum would give 02:20, a time that does not exist that night.
    assert (local.hour, local.minute) == (3, 20)
    assert rendered == "2026-03-08 03:20 EDT"


# --- The sweep ------------------------------------------------------------------------------


def test_address_sla_holds_after_thirty_minutes(address_item, address_order):
    opened = address_item.created_at

    assert review_items_sla_sweep(now=opened + timedelta(minutes=29)) == []
    address_item.refresh_from_db()
    assert address_item.sla_breached_at is None

    passed = opened + timedelta(minutes=30, seconds=1)
    assert review_items_sla_sweep(now=passed) == [address_item.pk]

    address_item.refresh_from_db()
    address_order.refresh_from_db()
    assert address_item.sla_breached_at == passed
    assert address_order.status == OrderStatus.ON_HOLD
    # Already held by this item's own reason: no second reason is added.
    assert [r["code"] for r in address_order.hold_reasons] == ["address_low_score"]
    event = OrderEvent.objects.get(order=address_order, kind="review.sla_passed")
    assert event.data["review_item"] == address_item.pk
    assert AuditEntry.objects.filter(
        action="review_item.sla_passed", target_id=str(address_item.pk)
    ).exists()


def test_sweep_holds_a_ready_order_and_runs_once(order):
    item = ReviewItem.objects.create(
        kind=ReviewKind.HIGH_VALUE, order=order, reason="Order over the limit.", source_data={}
    )
    assert item.sla_minutes == 240
    assert item.on_sla_breach == "hold_order"
    assert order.status == OrderStatus.READY

    with time_machine.travel(item.due_at + timedelta(seconds=1), tick=False):
        assert sweep_task.delay().get() == [item.pk]
        assert review_items_sla_sweep() == []

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_reasons == [
        {
            "severity": "hold",
            "code": "review_sla_passed",
            "review_item": item.pk,
            "message": f"Review item #{item.pk} passed its deadline without a decision",
        }
    ]
    assert OrderEvent.objects.filter(order=order, kind="review.sla_passed").count() == 1


def test_sweep_adds_reason_to_held_order(order):
    from orders.services import order_hold

    order_hold(order=order, reasons=[{"severity": "hold", "code": "other", "message": "Other"}])
    item = ReviewItem.objects.create(
        kind=ReviewKind.PRIORITY_CUSTOMER, order=order, reason="VIP.", source_data={}
    )

    review_items_sla_sweep(now=item.due_at)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert [r["code"] for r in order.hold_reasons] == ["other", "review_sla_passed"]


def test_substitution_escalates_to_the_manager(order, agent):
    manager = make_user("morgan", "cs_manager")
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
    item = decision.review_item
    assert review_item_may_decide(item, agent)
    assert not review_item_may_decide(item, manager)

    passed = item.due_at + timedelta(minutes=1)
    assert review_items_sla_sweep(now=passed) == [item.pk]
    assert review_items_sla_sweep(now=passed + timedelta(minutes=5)) == []

    item.refresh_from_db()
    assert item.escalated_to == "cs_manager"
    assert item.escalated_at == passed
    assert item.sla_breached_at == passed
    assert review_item_may_decide(item, manager)
    event = OrderEvent.objects.get(order=order, kind="review.sla_passed")
    assert "escalated to CS manager" in event.message


def test_decided_items_are_never_swept(address_item):
    address_item.status = "rejected"
    address_item.save(update_fields=["status"])

    assert review_items_sla_sweep(now=address_item.due_at + timedelta(days=1)) == []


def test_beat_runs_the_sweep_every_minute():
    entry = PeriodicTask.objects.get(name="reviews-sla-sweep")

    assert entry.task == "reviews.tasks.review_items_sla_sweep"
    assert entry.enabled
    assert (entry.interval.every, entry.interval.period) == (1, "minutes")
