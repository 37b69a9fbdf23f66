"""seed_demo replays the samples through the webhook; process_deliveries picks up leftovers."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from catalog.models import Sku
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from reviews.models import ReviewItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def seed(settings, django_capture_on_commit_callbacks):
    settings.DEBUG = True

    def run() -> str:
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("seed_demo", "--no-history", stdout=out)
        return out.getvalue()

    return run


# One test, because each seed_demo run costs seconds: the first run loads and replays, the
# demo proposals then get their verdicts, and a second run adds nothing.
def test_seed_demo_loads_decides_and_repeats_nothing(seed):
    from rest_framework.authtoken.models import Token

    from guardrails.demo import demo_decisions_replay
    from guardrails.models import Decision

    output = seed()

    assert Sku.objects.count() >= 200
    assert set(User.objects.values_list("username", flat=True)) >= {
        "agent",
        "manager",
        "ops",
        "integration",
        "admin",
    }
    assert "200 duplicate 01-normal.json" in output
    assert "agent     / agent-demo-pass" in output
    # seed_demo loads other channels too; these checks cover the Shopify store.
    shopify_deliveries = Delivery.objects.filter(channel__code="demo-shop")
    shopify_orders = Order.objects.filter(channel__code="demo-shop")
    assert shopify_deliveries.count() == 11
    assert shopify_orders.count() == 11
    assert set(shopify_deliveries.values_list("outcome", flat=True)) == {DeliveryOutcome.PROCESSED}
    held = set(
        shopify_orders.filter(status=OrderStatus.ON_HOLD).values_list("order_number", flat=True)
    )
    assert held == {"#1002", "#1003", "#1007", "#1009", "#1010", "#1011"}
    kinds = sorted(
        ReviewItem.objects.filter(order__channel__code="demo-shop").values_list("kind", flat=True)
    )
    assert kinds == [
        "address",
        "carrier_code",
        # #1007 is above the USD 1,000 escalation limit.
        "high_value",
        "out_of_stock",
        # The short hoodie also gets a substitution proposal, queued for a person.
        "substitution",
        "unmapped_sku",
        "unmapped_sku",
        "unmapped_sku",
        "unmapped_sku",
    ]

    # In a test the deliveries are processed only when the command's transaction ends, so the
    # demo proposals find their orders only now; in a real run they do on the first run.
    token = Token.objects.get(user__username="integration")
    results = demo_decisions_replay(token=token)

    assert [(result.status_code, result.verdict) for result in results] == [
        (201, "applied"),
        (201, "queued_for_review"),
        (201, "blocked"),
        (201, "blocked"),
        (201, "recommendation_only"),
        (201, "queued_for_review"),
    ]
    applied = Decision.objects.get(verdict="applied")
    assert applied.order.carrier_service.code == "ground"
    assert applied.order.carrier_service.carrier.code == "fedex"
    assert demo_decisions_replay(token=token) == []

    counts = (Sku.objects.count(), Order.objects.count(), ReviewItem.objects.count())
    again = seed()

    assert (Sku.objects.count(), Order.objects.count(), ReviewItem.objects.count()) == counts
    assert again.count(" accepted ") == 0


def test_seed_demo_refuses_without_debug(settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="runs only with DEBUG=1"):
        call_command("seed_demo", stdout=StringIO())


def test_process_deliveries_processes_leftovers(channel, catalog):
    from tests.conftest import as_body, order_payload

    # Recorded while the broker was down: no task ever ran for it.
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-left",
        topic="orders/create",
        headers={},
        body=as_body(order_payload()),
        signature_valid=True,
    )
    out = StringIO()

    call_command("process_deliveries", "--older-than", "0", "--inline", stdout=out)

    assert out.getvalue().strip() == "Processed 1 unprocessed deliveries."
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert Order.objects.get().status == OrderStatus.READY
