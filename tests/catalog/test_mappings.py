"""Channel kinds, identifier kinds and their formats, and mapping conflicts in the admin."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse

from catalog.identifiers import external_id_problem, id_kind_problem
from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind
from guardrails.models import AuditEntry
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db


def test_channel_and_identifier_kinds():
    assert ChannelKind.values == ["shopify", "woocommerce", "square", "amazon", "ebay", "canonical"]
    assert ExternalIdKind.values == [
        "sku",
        "shopify_variant",
        "amazon_asin",
        "amazon_seller_sku",
        "ebay_legacy_item",
        "pos_catalog_object",
    ]


@pytest.mark.parametrize("kind", ["woocommerce", "square", "amazon", "ebay", "canonical"])
def test_add_channel_accepts_the_new_kinds(kind):
    call_command("add_channel", kind, f"{kind}-1", "--secret", "s", stdout=StringIO())

    assert Channel.objects.get(code=f"{kind}-1").kind == kind


@pytest.mark.parametrize(
    ("id_kind", "external_id", "problem"),
    [
        ("sku", "TEE-BLK-M", None),
        ("sku", "", "missing"),
        ("sku", " TEE", "contains control characters or leading or trailing spaces"),
        ("sku", "TEE\tBLK", "contains control characters or leading or trailing spaces"),
        ("sku", "x" * 201, "longer than 200 characters"),
        ("shopify_variant", "44012345678901", None),
        (
            "shopify_variant",
            "gid://shopify/1",
            "not a valid Shopify variant id: expected digits only",
        ),
        ("amazon_asin", "B08N5WRWNW", None),
        ("amazon_asin", "0316769487", None),
        (
            "amazon_asin",
            "b08n5wrwnw",
            "not a valid Amazon ASIN: expected 10 upper-case letters and digits, e.g. B08N5WRWNW",
        ),
        ("amazon_seller_sku", "TEE BLK M 01", None),
        (
            "amazon_seller_sku",
            "S" * 41,
            "not a valid Amazon SellerSKU: expected at most 40 characters",
        ),
        ("ebay_legacy_item", "123456789012", None),
        ("ebay_legacy_item", "v1|1234|0", "not a valid eBay legacy item id: expected digits only"),
        ("pos_catalog_object", "W62UWFY35CWMYGVWK6TWJDNI", None),
        (
            "pos_catalog_object",
            "#temp-1",
            "not a valid POS catalog object id (Square): expected letters and digits, e.g. "
            "W62UWFY35CWMYGVWK6TWJDNI",
        ),
    ],
)
def test_external_id_formats(id_kind, external_id, problem):
    assert external_id_problem(id_kind=id_kind, external_id=external_id) == problem


def test_id_kinds_per_channel_kind():
    assert id_kind_problem(channel_kind="amazon", id_kind="amazon_asin") is None
    assert id_kind_problem(channel_kind="ebay", id_kind="sku") is None
    assert id_kind_problem(channel_kind="square", id_kind="pos_catalog_object") is None
    assert id_kind_problem(channel_kind="shopify", id_kind="ebay_legacy_item") == (
        "Shopify channels do not use ebay_legacy_item; use one of: shopify_variant, sku"
    )


def test_mapping_full_clean_checks_format_and_channel_kind(channel, catalog):
    bad_format = ChannelSkuMapping(
        channel=channel, id_kind="shopify_variant", external_id="abc", sku=catalog[0]
    )
    wrong_kind = ChannelSkuMapping(
        channel=channel, id_kind="amazon_asin", external_id="B08N5WRWNW", sku=catalog[0]
    )

    with pytest.raises(ValidationError) as raised:
        bad_format.full_clean()
    assert raised.value.message_dict == {
        "external_id": ["Not a valid Shopify variant id: expected digits only."]
    }
    with pytest.raises(ValidationError) as raised:
        wrong_kind.full_clean()
    assert raised.value.message_dict == {
        "id_kind": ["Shopify channels do not use amazon_asin; use one of: shopify_variant, sku."]
    }


def mapping_form_data(channel, sku, external_id="NEW-ID", id_kind="sku") -> dict:
    return {"channel": channel.pk, "id_kind": id_kind, "external_id": external_id, "sku": sku.pk}


def test_admin_reports_mapping_conflict_as_form_error(client, ops, channel, catalog):
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_channelskumapping_add"),
        mapping_form_data(channel, catalog[1], external_id="TEE-CLASSIC-BLK-M"),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert list(errors) == [
        "Channel SKU 'TEE-CLASSIC-BLK-M' on channel shop is already mapped to "
        "TEE-CLASSIC-BLK-M, not TEE-CLASSIC-WHT-M."
    ]
    assert errors.as_data()[0].code == "mapping_conflict"
    assert ChannelSkuMapping.objects.get(external_id="TEE-CLASSIC-BLK-M").sku == catalog[0]


def test_admin_reports_an_existing_identical_mapping(client, ops, channel, catalog):
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_channelskumapping_add"),
        mapping_form_data(channel, catalog[0], external_id="TEE-CLASSIC-BLK-M"),
    )

    assert response.status_code == 200
    assert list(response.context["adminform"].form.non_field_errors()) == [
        "This identifier is already mapped to TEE-CLASSIC-BLK-M."
    ]
    assert ChannelSkuMapping.objects.count() == 3


def test_admin_mapping_releases_held_orders(client, ops, channel, catalog, post_webhook):
    line = order_payload()["line_items"][0] | {"sku": "TSHIRT-BLACK-MED"}
    post_webhook(as_body(order_payload(lines=[line])))
    client.logout()
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_channelskumapping_add"),
        mapping_form_data(channel, catalog[0], external_id="TSHIRT-BLACK-MED"),
    )

    assert response.status_code == 302
    assert Order.objects.get().status == OrderStatus.READY
    assert ReviewItem.objects.get().status == ReviewStatus.RESOLVED
    entry = AuditEntry.objects.get(action="mapping.created")
    assert (entry.actor, entry.reason) == (ops, "admin")


def test_admin_remap_is_audited(client, ops, channel, catalog):
    mapping = ChannelSkuMapping.objects.get(external_id="TEE-CLASSIC-BLK-M")
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_channelskumapping_change", args=[mapping.pk]),
        mapping_form_data(channel, catalog[1], external_id="TEE-CLASSIC-BLK-M"),
    )

    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.sku == catalog[1]
    entry = AuditEntry.objects.get(action="mapping.updated")
    assert entry.before["sku"] == "TEE-CLASSIC-BLK-M"
    assert entry.after["sku"] == "TEE-CLASSIC-WHT-M"


def test_admin_conflict_created_after_the_form_check(client, ops, channel, catalog, monkeypatch):
    # Someone maps the identifier between the form's check and the save.
    monkeypatch.setattr(ChannelSkuMapping, "validate_constraints", lambda mapping, exclude: None)
    client.force_login(ops)
    url = reverse("admin:catalog_channelskumapping_add")

    response = client.post(
        url, mapping_form_data(channel, catalog[1], external_id="TEE-CLASSIC-BLK-M"), follow=True
    )

    assert response.redirect_chain == [(url, 302)]
    assert [str(message) for message in response.context["messages"]] == [
        "Channel SKU 'TEE-CLASSIC-BLK-M' on channel shop is already mapped to "
        "TEE-CLASSIC-BLK-M, not TEE-CLASSIC-WHT-M."
    ]
    assert ChannelSkuMapping.objects.get(external_id="TEE-CLASSIC-BLK-M").sku == catalog[0]
