"""Each channel adapter on its sample payloads."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from catalog.models import ExternalIdKind
from orders.adapters import adapter_for, amazon, ebay, square, woocommerce
from orders.canonical import AdapterError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load(relative: str) -> dict:
    return json.loads((SAMPLES / relative).read_text("utf-8"))


def square_payload(order_id: str) -> dict:
    return {"event": {}, "order": load(f"square/orders/{order_id}.json")["order"]}


def test_adapters_registered_per_kind():
    assert adapter_for("woocommerce") is woocommerce
    assert adapter_for("square") is square
    assert adapter_for("amazon") is amazon
    assert adapter_for("ebay") is ebay


# WooCommerce


def test_woocommerce_normal_order():
    order = woocommerce.parse_order(load("woocommerce/01-normal.json"))
    assert order.channel_order_id == "4817"
    assert order.total == Decimal("82.21")
    assert order.tax_total == Decimal("4.29")
    assert order.shipping_total == Decimal("7.95")
    assert order.lines[0].unit_price == Decimal("19.99")
    assert order.lines[0].identifiers == [(ExternalIdKind.SKU, "TEE-CLASSIC-NVY-L")]
    assert order.shipping_lines[0]["code"] == "UPS Ground"
    assert order.shipping_address["province_code"] == "WI"
    assert order.customer_id == "212"
    assert order.state == "open"


def test_woocommerce_dates_come_from_gmt_fields():
    order = woocommerce.parse_order(load("woocommerce/01-normal.json"))
    assert order.source_updated_at == datetime(2024, 11, 12, 15, 41, 11, tzinfo=UTC)
    assert order.placed_at == datetime(2024, 11, 12, 15, 41, 7, tzinfo=UTC)


def test_woocommerce_unit_price_before_coupon():
    order = woocommerce.parse_order(load("woocommerce/02-unmapped-sku.json"))
    assert order.lines[0].unit_price == Decimal("54.99")
    assert order.discount_total == Decimal("9.50")
    assert order.customer_id == ""


def test_woocommerce_local_pickup():
    order = woocommerce.parse_order(load("woocommerce/03-guest-local-pickup.json"))
    assert order.in_store_pickup is True
    assert order.shipping_address is None
    assert order.shipping_lines == []


def test_woocommerce_price_number_read_without_float():
    payload = load("woocommerce/05-eur-prices-include-tax.json")
    del payload["line_items"][0]["subtotal"]
    order = woocommerce.parse_order(payload)
    assert order.lines[0].unit_price == Decimal("20.965")


@pytest.mark.parametrize("status", ["cancelled", "refunded", "failed"])
def test_woocommerce_cancelled_statuses(status):
    payload = load("woocommerce/01-normal.json")
    payload["status"] = status
    assert woocommerce.parse_order(payload).state == "cancelled"


def test_woocommerce_delivery_key_from_gmt():
    payload = load("woocommerce/04-updated-completed.json")
    assert woocommerce.delivery_key(payload) == "order-4817@2024-11-13T20:05:52Z"


def test_woocommerce_missing_modified_date_rejected():
    payload = load("woocommerce/01-normal.json")
    payload["date_modified_gmt"] = None
    with pytest.raises(AdapterError) as error:
        woocommerce.delivery_key(payload)
    assert error.value.field == "date_modified_gmt"


def test_woocommerce_empty_sku_kept_empty():
    payload = load("woocommerce/01-normal.json")
    payload["line_items"][0]["sku"] = ""
    assert woocommerce.parse_order(payload).lines[0].channel_sku == ""


# Square


def test_square_shipment_order():
    order = square.parse_order(square_payload("r2uij3XisMtiB349wCEDoOxN2M0ZY"))
    assert order.total == Decimal("182.84")
    assert order.shipping_total == Decimal("12.00")
    assert order.lines[1].quantity == 3
    assert order.lines[1].unit_price == Decimal("14.99")
    assert order.lines[0].identifiers == [
        (ExternalIdKind.POS_CATALOG_OBJECT, "Z2NJKEY9A0U3DMML6149S19Z")
    ]
    assert order.lines[0].channel_sku == ""
    assert order.shipping_address["city"] == "Evanston"
    assert order.shipping_lines[0]["code"] == "UPS Ground"
    assert order.event_version == "2"
    assert order.in_store_pickup is False


def test_square_pickup_order():
    order = square.parse_order(square_payload("m0QwjEKVpmvp5WK3x9AGj0ppMr0ZY"))
    assert order.in_store_pickup is True
    assert order.shipping_address is None
    assert order.shipping_lines == []
    assert order.event_version == "4"
    assert order.source_updated_at == datetime(2024, 11, 16, 0, 7, 55, 496000, tzinfo=UTC)


def test_square_jpy_has_no_minor_unit():
    order = square.parse_order(square_payload("IlFTWSuvxfcmr80eHvvhxWyuLq3ZY"))
    assert order.currency == "JPY"
    assert order.total == Decimal("17520")
    assert order.lines[0].unit_price == Decimal("8800")
    assert order.taxes_included is True
    assert order.shipping_address["province"] == "大阪府"


def test_square_kwd_uses_three_decimals():
    payload = square_payload("r2uij3XisMtiB349wCEDoOxN2M0ZY")
    payload["order"]["total_money"] = {"amount": 12345, "currency": "KWD"}
    for key in ("total_tax_money", "total_discount_money", "total_service_charge_money"):
        payload["order"][key]["currency"] = "KWD"
    for item in payload["order"]["line_items"]:
        item["base_price_money"]["currency"] = "KWD"
    order = square.parse_order(payload)
    assert order.total == Decimal("12.345")


def test_square_string_amount_rejected():
    payload = square_payload("r2uij3XisMtiB349wCEDoOxN2M0ZY")
    payload["order"]["total_money"]["amount"] = "18284"
    with pytest.raises(AdapterError) as error:
        square.parse_order(payload)
    assert error.value.field == "order.total_money.amount"


def test_square_signature_covers_url_and_body():
    body = b'{"event_id":"x"}'
    signature = square.signature_for("https://a.example.com/hook/", body, "key")
    assert square.signature_is_valid("https://a.example.com/hook/", body, "key", signature)
    assert not square.signature_is_valid("https://a.example.com/hook", body, "key", signature)


# Amazon


def test_amazon_prime_order():
    order = amazon.parse_order(load("amazon/01-prime.json"))
    assert order.total == Decimal("76.14")
    assert order.tax_total == Decimal("6.16")
    assert order.marketplace == "Amazon.com"
    assert order.tags == ["prime"]
    assert order.shipping_lines[0]["code"] == "Second US D2D Dom"
    assert order.lines[0].identifiers == [
        (ExternalIdKind.AMAZON_SELLER_SKU, "HOODIE-PULLOVER-FRS-L"),
        (ExternalIdKind.AMAZON_ASIN, "B0DJ4R7TQX"),
        (ExternalIdKind.SKU, "HOODIE-PULLOVER-FRS-L"),
    ]


def test_amazon_pending_is_incomplete():
    order = amazon.parse_order(load("amazon/02-pending.json"))
    assert order.state == "incomplete"
    assert order.total == Decimal("0")
    assert order.currency == "USD"
    assert order.shipping_address is None
    assert order.lines[1].quantity == 2


def test_amazon_unit_price_from_line_total():
    order = amazon.parse_order(load("amazon/04-unknown-seller-sku.json"))
    assert order.lines[0].quantity == 2
    assert order.lines[0].unit_price == Decimal("24.99")
    assert order.discount_total == Decimal("9.99")
    assert order.shipping_total == Decimal("4.99")
    assert order.lines[0].identifiers[1] == (ExternalIdKind.AMAZON_ASIN, "B0DK7M3QXP")


def test_amazon_canceled_allows_zero_quantity():
    order = amazon.parse_order(load("amazon/05-canceled.json"))
    assert order.state == "cancelled"
    assert order.lines[0].quantity == 0


def test_amazon_zero_quantity_rejected_when_open():
    payload = load("amazon/01-prime.json")
    payload["items"][0]["QuantityOrdered"] = 0
    with pytest.raises(AdapterError) as error:
        amazon.parse_order(payload)
    assert error.value.field == "items[0].QuantityOrdered"


def test_amazon_order_key():
    assert amazon.order_key(load("amazon/02-pending.json")) == (
        "114-2093847-5561029@2024-11-16T18:03:57Z"
    )


# eBay


def test_ebay_normal_order():
    order = ebay.parse_order(load("ebay/01-normal.json"))
    assert order.total == Decimal("137.42")
    assert order.shipping_address["city"] == "Columbus"
    assert order.shipping_lines[0]["code"] == "USPSPriority"
    assert order.lines[1].unit_price == Decimal("24.99")
    assert order.tags == []


def test_ebay_international_uses_final_destination():
    order = ebay.parse_order(load("ebay/02-international-shipping.json"))
    assert order.shipping_address["country_code"] == "AU"
    assert order.shipping_address["city"] == "Brunswick East"
    assert order.tags == ["ebay_international_shipping"]


def test_ebay_empty_sku_falls_back_to_legacy_item():
    order = ebay.parse_order(load("ebay/03-empty-sku.json"))
    assert [line.channel_sku for line in order.lines] == ["", ""]
    assert order.lines[0].identifiers == [
        (ExternalIdKind.SKU, ""),
        (ExternalIdKind.EBAY_LEGACY_ITEM, "256481755530"),
    ]
    assert order.lines[1].unit_price == Decimal("21.99")


def test_ebay_canceled_order():
    payload = load("ebay/01-normal.json")
    payload["cancelStatus"]["cancelState"] = "CANCELED"
    assert ebay.parse_order(payload).state == "cancelled"
