"""Carrier rates: the admin's add form rejects bad reference data, and the demo seeds rates
the carrier recommender can use."""

import pytest
from django.urls import reverse

from guardrails.demo import DEMO_CARRIER_RATES, demo_carrier_rates_load
from guardrails.models import AuditEntry
from guardrails.recommenders.rates import RATE_MAX_WEIGHT_GRAMS
from orders.models import CarrierRate, CarrierRateStatus

from .conftest import channel_grant
from .recommender_fixtures import order_create, service_get, sku_create

ADD_URL = "admin:orders_carrierrate_add"


@pytest.fixture
def rate_form(carriers) -> dict:
    return {
        "service": service_get("canada_post/expedited_parcel").pk,
        "destination_country": "US",
        "max_weight_grams": "1000",
        "price": "5.00",
        "currency": "USD",
        "note": "",
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("currency", "XYZ", "Unknown currency 'XYZ'; use an ISO 4217 code like USD."),
        ("currency", "XAU", "Unknown currency 'XAU'; use an ISO 4217 code like USD."),
        ("currency", "usd", "Unknown currency 'usd'; use an ISO 4217 code like USD."),
        (
            "destination_country",
            "ZZ",
            "Unknown country 'ZZ'; use an ISO 3166-1 code like US, or leave it empty for "
            "every destination.",
        ),
        (
            "destination_country",
            "XX",
            "Unknown country 'XX'; use an ISO 3166-1 code like US, or leave it empty for "
            "every destination.",
        ),
        (
            "max_weight_grams",
            "0",
            "The weight limit must be at least 1 g; leave it empty for any weight.",
        ),
        (
            "max_weight_grams",
            "99999999999999",
            "The weight limit 99,999,999,999,999 g is more than 1,000,000 g (1,000 kg); enter "
            "the limit in grams.",
        ),
    ],
)
def test_admin_add_rejects_bad_value(client, ops, rate_form, field, value, message):
    client.force_login(ops)

    response = client.post(reverse(ADD_URL), rate_form | {field: value})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not CarrierRate.objects.exists()


@pytest.mark.parametrize(
    ("country", "weight"),
    [("US", "1"), ("CA", str(RATE_MAX_WEIGHT_GRAMS)), ("", ""), ("XK", "500")],
)
def test_admin_add_accepts_valid_rate(client, ops, rate_form, country, weight):
    client.force_login(ops)

    response = client.post(
        reverse(ADD_URL), rate_form | {"destination_country": country, "max_weight_grams": weight}
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    rate = CarrierRate.objects.get()
    assert rate.status == CarrierRateStatus.ACTIVE
    assert rate.destination_country == country


def test_admin_add_stores_country_in_capitals(client, ops, rate_form):
    client.force_login(ops)

    response = client.post(reverse(ADD_URL), rate_form | {"destination_country": "us"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert CarrierRate.objects.get().destination_country == "US"


def test_demo_rates_load_once_with_audit(carriers):
    added = demo_carrier_rates_load()
    again = demo_carrier_rates_load()

    assert added == len(DEMO_CARRIER_RATES)
    assert again == 0
    assert CarrierRate.objects.filter(status=CarrierRateStatus.ACTIVE).count() == added
    assert set(CarrierRate.objects.values_list("currency", flat=True)) == {"USD"}
    audits = AuditEntry.objects.filter(action="carrier_rate.activated")
    assert audits.count() == added
    assert audits.first().actor_label == "demo seed"


def test_demo_rates_keep_an_entered_lane(carriers):
    service = service_get("ups/ground")
    entered = CarrierRate.objects.create(
        service=service,
        destination_country="US",
        max_weight_grams=1000,
        price="9.00",
        currency="USD",
    )

    added = demo_carrier_rates_load()

    assert added == len(DEMO_CARRIER_RATES) - 1
    lane = CarrierRate.objects.filter(
        service=service, destination_country="US", max_weight_grams=1000
    )
    assert list(lane) == [entered]


def test_demo_rates_give_recommendation_candidates(
    default_policies, client, integration_user, channel, carriers
):
    demo_carrier_rates_load()
    shirt = sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", weight_grams=250)
    parcel = order_create(channel, [(shirt, 1, "19.99")], number=1)
    heavy = order_create(channel, [(shirt, 8, "19.99")], number=2, country="DE")
    client.force_login(channel_grant(integration_user, channel))

    responses = [
        client.post(reverse("order-carrier-recommendation", kwargs={"order_id": order.pk}))
        for order in (parcel, heavy)
    ]

    assert [response.status_code for response in responses] == [200, 200]
    domestic, abroad = (response.json()["candidates"] for response in responses)
    # The nine US services and DHL Express Worldwide, whose lane covers any country.
    assert len(domestic) == 10
    assert {candidate["rate"]["price"] for candidate in domestic} >= {"7.500", "10.900"}
    assert [candidate["carrier_service"] for candidate in abroad] == [
        "dhl_express/express_worldwide"
    ]
    assert abroad[0]["rate"]["price"] == "72.000"
