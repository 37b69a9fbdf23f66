"""Queue edge cases: a channel update while an AI proposal waits, revise permissions, sampling
settings that take effect at once, and export dates at the end of the calendar."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from guardrails.forms import GuardrailSettingsForm
from guardrails.models import ActionType, GuardrailSettings, SamplingState
from guardrails.services import decision_propose
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from reviews.services import ReviewConflict, review_item_accept
from tests.conftest import as_body, make_user, order_payload, signed_headers
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ready_order(default_policies, channel, catalog, post_webhook) -> Order:
    post_webhook(as_body(order_payload()))
    return Order.objects.get()


def cancellation_queued(order: Order):
    return decision_propose(
        order_id=order.pk,
        action_code="cancel_order",
        before={"status": order.status},
        after={"status": OrderStatus.CANCELLED},
        confidence=Decimal("0.7"),
        model_name="gpt-ops",
        model_version="1",
    )


def test_channel_update_keeps_ai_proposal_open(ready_order, post_webhook):
    decision = cancellation_queued(ready_order)
    body = as_body(order_payload(updated_at="2024-11-04T11:00:00-05:00", note="gift wrap"))
    headers = signed_headers(body, webhook_id="wh-update") | {"X-Shopify-Topic": "orders/updated"}

    post_webhook(body, headers)

    item = ReviewItem.objects.get(pk=decision.review_item_id)
    order = Order.objects.get()
    assert item.status == ReviewStatus.OPEN
    assert order.version > item.order_version
    assert [reason["code"] for reason in order.hold_reasons] == ["ai_decision"]
    assert order.status == OrderStatus.ON_HOLD
    with pytest.raises(ReviewConflict) as raised:
        review_item_accept(item_id=item.pk, user=make_user("cara", "cs_manager"))
    assert raised.value.code == "stale_order"


def test_revise_refused_before_form_errors(ready_order):
    decision = cancellation_queued(ready_order)
    agent = Client()
    agent.force_login(make_user("sam", "cs_agent"))

    response = agent.post(
        reverse("reviews:revise", args=[decision.review_item_id]), {}, headers=HTMX
    )

    assert response.status_code == 403


def test_settings_save_recomputes_sampling(default_policies, client):
    client.force_login(make_staff_user("olivia", "ops_manager"))
    action = ActionType.objects.get(code="select_carrier")
    SamplingState.objects.create(action=action, rate=Decimal("0.10"))
    row = GuardrailSettings.objects.get(pk=1)
    data = {name: str(getattr(row, name)) for name in GuardrailSettingsForm.Meta.fields}
    data["audit_sample_start_rate"] = "1"

    response = client.post(reverse("admin:guardrails_guardrailsettings_change", args=[1]), data)

    assert response.status_code == 302
    assert SamplingState.objects.get(action=action).rate == Decimal("1")


def test_export_at_calendar_end_is_400(default_policies, client):
    client.force_login(make_user("cara", "cs_manager"))

    response = client.get(
        reverse("orders:history-export"), {"from": "9999-12-30", "to": "9999-12-31"}
    )

    assert response.status_code == 400
    assert "9999-12-31" in response.content.decode()
