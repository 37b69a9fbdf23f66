"""seed_demo adds carrier rates, so the carrier recommender proposes on the demo orders."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from guardrails.demo import DEMO_CARRIER_RATES
from orders.models import CarrierRate, CarrierRateStatus, Order

pytestmark = pytest.mark.django_db


def test_seed_demo_rates_give_candidates(settings, django_capture_on_commit_callbacks):
    settings.DEBUG = True
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", "--no-history", stdout=out)
    order = Order.objects.get(channel__code="demo-shop", order_number="#1001")
    token = Token.objects.get(user__username="integration")

    response = Client().post(
        reverse("order-carrier-recommendation", kwargs={"order_id": order.pk}),
        headers={"Authorization": f"Token {token.key}"},
    )

    assert f"{len(DEMO_CARRIER_RATES)} demo rates added." in out.getvalue()
    active = CarrierRate.objects.filter(status=CarrierRateStatus.ACTIVE)
    assert active.count() == len(DEMO_CARRIER_RATES)
    assert response.status_code == 200, response.content
    assert response.json()["candidates"], response.json()
