"""Canonical API addresses: region names, full-width postcodes, field names, bidi controls."""

import pytest

from catalog.models import Sku
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem
from tests.ingestion.conftest import canonical_sample

pytestmark = pytest.mark.django_db(transaction=True)

RLO = "\u202e"


@pytest.fixture
def skus(db, carriers):
    for code in ("TOWEL-BATH-WHT-OS", "CUSHION-LINEN-NAT-OS", "BLANKET-THROW-OAT-OS"):
        Sku.objects.create(code=code, title=code, price="10.00", currency="USD")


def post_with_address(api_client, **changes) -> Order:
    body = canonical_sample()
    body["shipping_address"].update(changes)
    response = api_client.post_order(body)
    assert response.status_code == 201, response.content
    return Order.objects.get(pk=response.json()["order"])


@pytest.mark.parametrize("region", ["Oregon", "oregon", "OREGON"])
def test_region_full_name_read_as_code(api_client, skus, region):
    order = post_with_address(api_client, region=region)

    assert order.status == OrderStatus.READY
    assert order.address_reasons == []
    assert order.shipping_address["province_code"] == "OR"
    assert order.shipping_address["province"] == region


def test_canadian_region_name_read_as_code(api_client, skus):
    order = post_with_address(
        api_client,
        address1="1055 W Georgia St",
        address2=None,
        city="Vancouver",
        region="british columbia",
        postal_code="V6E 3P3",
        country_code="CA",
    )

    assert order.shipping_address["province_code"] == "BC"
    assert order.address_reasons == []


def test_region_name_still_checked_against_zip(api_client, skus):
    order = post_with_address(api_client, region="California")

    # California is a real state, but not the one of ZIP 97210.
    assert order.shipping_address["province_code"] == "CA"
    assert [reason["code"] for reason in order.address_reasons] == ["postal_code_area_mismatch"]


def test_unknown_region_still_held(api_client, skus):
    order = post_with_address(api_client, region="Bogus")

    assert order.status == OrderStatus.ON_HOLD
    assert order.address_reasons == [
        {
            "code": "country_area_invalid",
            "field": "region",
            "message": "State 'BOGUS' is not a state of US.",
            "severity": "error",
        }
    ]


@pytest.mark.parametrize("postal_code", ["９７２１０", "٩٧٢١٠"])
def test_postal_code_digits_read_as_ascii(api_client, skus, postal_code):
    order = post_with_address(api_client, postal_code=postal_code)

    assert order.shipping_address["zip"] == "97210"
    assert order.address_reasons == []
    assert order.status == OrderStatus.READY


def test_full_width_region_code_read(api_client, skus):
    order = post_with_address(api_client, region="ＯＲ")

    assert order.shipping_address["province_code"] == "OR"
    assert "province" not in order.shipping_address
    assert order.address_reasons == []


def test_hold_reasons_use_format_field_names(api_client, skus):
    order = post_with_address(api_client, postal_code="9721")

    assert [reason["field"] for reason in order.address_reasons] == ["postal_code"]
    item = ReviewItem.objects.get(order=order)
    assert [reason["field"] for reason in item.proposal["reasons"]] == ["postal_code"]
    parsed = item.proposal["parsed"]
    assert parsed["region"] == "OR"
    assert parsed["address1"] == "2675 NW Thurman Yard Rd"
    assert parsed["address2"] == "Dock 3"
    assert parsed["company"] == ""
    for internal in ("country_area", "street_address", "company_name", "zip", "province_code"):
        assert internal not in parsed


def test_order_api_maps_stored_field_names(api_client, skus):
    order = post_with_address(api_client, postal_code="9721")
    # An order checked before the names were mapped.
    Order.objects.filter(pk=order.pk).update(
        address_reasons=[
            {"code": "x", "field": "province_code", "message": "m", "severity": "error"}
        ]
    )

    response = api_client.get(f"/api/v1/orders/{order.pk}/")

    assert response.status_code == 200, response.content
    assert response.json()["address_reasons"][0]["field"] == "region"


BIDI_FIELDS = [
    ("shipping_address", "name"),
    ("shipping_address", "address1"),
    ("shipping_address", "address2"),
    ("shipping_address", "city"),
    ("billing_address", "address1"),
    ("customer", "name"),
]


@pytest.mark.parametrize(("container", "field"), BIDI_FIELDS)
@pytest.mark.parametrize("control", ["\u202a", RLO, "\u2066", "\u2069"])
def test_bidi_control_rejected(api_client, container, field, control):
    body = canonical_sample()
    body[container][field] = f"12 Main St{control} 3A"

    response = api_client.post_order(body)

    assert response.status_code == 400, response.content
    errors = response.json()["error"]["fields"]
    assert list(errors) == [f"{container}.{field}"]
    assert f"U+{ord(control):04X}" in errors[f"{container}.{field}"][0]
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    ("name", "address1"),
    [("دار النشر", "شارع الملك فهد 12"), ("רחוב הרצל", "הרצל 5 דירה 3")],
)
def test_right_to_left_text_accepted(api_client, skus, name, address1):
    order = post_with_address(api_client, name=name)
    body = canonical_sample()
    body["channel_order_id"] = "RTL-2"
    body["billing_address"]["address1"] = address1
    body["customer"]["name"] = name

    response = api_client.post_order(body, key="key-2")

    assert response.status_code == 201, response.content
    assert order.shipping_address["name"] == name
