"""Masking of customer personal data in history exports and pages."""

import copy

import pytest

from orders.masking import MASK, mask_email, mask_personal_data, mask_text, mask_value

ADDRESS = {
    "name": "Ada Quill",
    "company": "Quill & Co",
    "address1": "12 Birch Lane",
    "address2": "Apt 4",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
    "phone": "+1 512-555-0199",
}


def test_address_street_name_phone_masked_place_kept():
    masked = mask_personal_data(ADDRESS)

    assert masked["name"] == "A***"
    assert masked["company"] == "Q***"
    assert masked["address1"] == MASK
    assert masked["address2"] == MASK
    assert masked["phone"] == "***99"
    assert (masked["city"], masked["province_code"], masked["zip"], masked["country_code"]) == (
        "Austin",
        "TX",
        "78701",
        "US",
    )


def test_nested_audit_payload_is_masked_everywhere():
    data = {
        "before": {"shipping_address": ADDRESS, "customer_email": "ada@example.com"},
        "after": {
            "shipping_address": ADDRESS | {"address1": "12 Birch Ln"},
            "lines": [{"name": "Classic Cotton T-Shirt", "sku": "TEE-1"}],
        },
        "facts": {
            "order": {"customer": {"first_name": "Ada", "last_name": "Quill", "id": 70}},
            "model": {"name": "gpt-sub", "version": "2024-06"},
        },
    }
    original = copy.deepcopy(data)

    masked = mask_personal_data(data)

    assert masked["before"]["shipping_address"]["address1"] == MASK
    assert masked["before"]["customer_email"] == "a***@example.com"
    assert masked["after"]["shipping_address"]["address1"] == MASK
    assert masked["after"]["shipping_address"]["name"] == "A***"
    customer = masked["facts"]["order"]["customer"]
    assert (customer["first_name"], customer["last_name"], customer["id"]) == ("A***", "Q***", 70)
    # Outside an address or customer record, "name" is a product or a model.
    assert masked["after"]["lines"][0]["name"] == "Classic Cotton T-Shirt"
    assert masked["facts"]["model"]["name"] == "gpt-sub"
    assert data == original


def test_comparison_rows_mask_personal_fields_only():
    rows = [
        {"field": "address1", "received": "12 Birch Lane", "suggested": "12 Birch Ln"},
        {"field": "city", "received": "austin", "suggested": "Austin"},
        {"field": "name", "received": "ada quill", "suggested": "Ada Quill"},
    ]

    masked = mask_personal_data({"comparison": rows})["comparison"]

    assert masked[0] == {"field": "address1", "received": MASK, "suggested": MASK}
    assert masked[1] == rows[1]
    assert masked[2] == {"field": "name", "received": "a***", "suggested": "A***"}


def test_email_inside_free_text_is_masked():
    text = "Customer ada.quill@example.com asked to change it; cc ops@shop.example"

    assert mask_text(text) == "Customer a***@example.com asked to change it; cc o***@shop.example"
    assert mask_personal_data(["note: ada@example.com"]) == ["note: a***@example.com"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("email", "ada@example.com", "a***@example.com"),
        ("email", "not-an-email", MASK),
        ("phone", "12", MASK),
        ("phone", "+44 20 7946 0018", "***18"),
        ("customer_name", "Ada Quill", "A***"),
        ("street", "12 Birch Lane", MASK),
        ("address1", 12, MASK),
        ("address1", None, None),
        ("address1", "", ""),
    ],
)
def test_mask_value_by_key(key, value, expected):
    assert mask_value(key, value) == expected


def test_structure_under_personal_key_masks_every_leaf():
    masked = mask_personal_data({"email": {"primary": "ada@example.com", "other": ["a@b.example"]}})

    assert masked == {"email": {"primary": "a***@example.com", "other": ["a***@b.example"]}}


def test_scalars_and_none_pass_through():
    assert mask_personal_data(None) is None
    assert mask_personal_data(3) == 3
    assert mask_personal_data({"total": "44.98", "ok": True}) == {"total": "44.98", "ok": True}
    assert mask_email("nobody") == MASK
