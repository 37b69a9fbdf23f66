"""The demo's stock: every sample order reserves except #1007, which a restock releases."""

import uuid
from collections.abc import Iterator
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import TestCase, override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.models import Location, StockLevel
from omsguard.celery import app as celery_app
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import _CertainOnlyDraw

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def seeded_once(django_db_setup, django_db_blocker) -> Iterator[str]:
    """Seed the demo once for the module, in a transaction rolled back at the module's end.

    A seed takes seconds, and each test only reads it or changes it inside its own
    transaction, which nests in this one as a savepoint. The module scope comes before the
    autouse fixtures of tests/conftest.py, so the seed applies their settings itself: tasks
    eager, audit sampling and known-answer seeding only at a rate of 1, rate limits apart.
    """
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        out = StringIO()
        try:
            with (
                override_settings(DEBUG=True, OMSGUARD_RATE_LIMIT_NAMESPACE=uuid.uuid4().hex),
                mock.patch("guardrails.sampling.random", _CertainOnlyDraw()),
                mock.patch("reviews.known_answers.random", _CertainOnlyDraw()),
                TestCase.captureOnCommitCallbacks(execute=True),
            ):
                call_command("seed_demo", "--no-history", stdout=out)
            yield out.getvalue()
        finally:
            celery_app.conf.task_always_eager = eager
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture
def seeded(seeded_once: str, settings, db) -> str:
    settings.DEBUG = True
    return seeded_once


def test_demo_holds_only_the_short_hoodie(seeded):
    assert "Stock: 3 locations, 846 stock events applied." in seeded
    assert set(Location.objects.values_list("kind", flat=True)) == {"warehouse", "store", "3pl"}
    item = ReviewItem.objects.get(kind=ReviewKind.OUT_OF_STOCK)
    assert item.order.order_number == "#1007"
    assert item.proposal["sku"] == "HOODIE-PULLOVER-FRS-XL"
    assert (item.proposal["requested"], item.proposal["best_available"]) == (10, 6)
    out_of_stock = [
        order.order_number
        for order in Order.objects.order_by("order_number")
        if any(reason["code"] == "out_of_stock" for reason in order.hold_reasons)
    ]
    assert out_of_stock == ["#1007"]
    held = Order.objects.get(order_number="#1007")
    # The substitution recommender proposed another hoodie; a person decides it.
    # It is also above the USD 1,000 escalation limit, so a person releases it.
    assert [reason["code"] for reason in held.hold_reasons] == [
        "high_value",
        "out_of_stock",
        "ai_decision",
    ]
    substitution = ReviewItem.objects.get(kind=ReviewKind.SUBSTITUTION)
    assert substitution.order_line == item.order_line
    assert substitution.ai_decision.verdict == "queued_for_review"


def test_demo_restock_through_api_releases_order(seeded, django_capture_on_commit_callbacks):
    client = APIClient()
    token = Token.objects.get(user__username="integration")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/stock-events/",
            {
                "source": "demo-seed",
                "event_id": "restock-xl",
                "sku": "HOODIE-PULLOVER-FRS-XL",
                "location": "WH-MAIN",
                "kind": "absolute",
                "quantity": 24,
                "version": 2,
            },
            format="json",
        )

    assert response.status_code == 201
    # Only the high-value release is left to a person.
    order = Order.objects.get(order_number="#1007")
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["high_value"]
    assert ReviewItem.objects.get(kind=ReviewKind.OUT_OF_STOCK).status == ReviewStatus.RESOLVED
    # The hoodie is in stock again, so the queued substitution no longer applies.
    assert ReviewItem.objects.get(kind=ReviewKind.SUBSTITUTION).status == ReviewStatus.RESOLVED
    level = StockLevel.objects.get(sku__code="HOODIE-PULLOVER-FRS-XL", location__code="WH-MAIN")
    assert (level.on_hand, level.reserved) == (24, 10)
