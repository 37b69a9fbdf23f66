"""Per-channel listing constraints and the listing_forbids selector."""

import pytest
from django.db import IntegrityError
from django.urls import reverse

from catalog.models import Channel, ChannelKind, ListingConstraint, ListingConstraintKind, Sku
from catalog.selectors import listing_forbids
from guardrails.models import AuditEntry

pytestmark = pytest.mark.django_db

NO_SUBSTITUTION = ListingConstraintKind.NO_SUBSTITUTION


@pytest.fixture
def other_channel(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.EBAY, code="ebay-us")


def test_nothing_is_forbidden_without_constraints(channel, catalog):
    assert listing_forbids(channel=channel, sku=catalog[0], kind=NO_SUBSTITUTION) is False


def test_constraint_forbids_only_its_sku_kind_and_channel(channel, catalog, other_channel):
    ListingConstraint.objects.create(channel=channel, sku=catalog[0], kind=NO_SUBSTITUTION)

    assert listing_forbids(channel=channel, sku=catalog[0], kind=NO_SUBSTITUTION) is True
    assert listing_forbids(channel=channel, sku=catalog[1], kind=NO_SUBSTITUTION) is False
    assert (
        listing_forbids(
            channel=channel, sku=catalog[0], kind=ListingConstraintKind.NOT_A_SUBSTITUTE
        )
        is False
    )
    assert listing_forbids(channel=other_channel, sku=catalog[0], kind=NO_SUBSTITUTION) is False


def test_channel_wide_constraint_covers_every_sku(channel, catalog, other_channel):
    ListingConstraint.objects.create(channel=channel, sku=None, kind=NO_SUBSTITUTION)

    assert all(listing_forbids(channel=channel, sku=sku, kind=NO_SUBSTITUTION) for sku in catalog)
    assert listing_forbids(channel=other_channel, sku=catalog[0], kind=NO_SUBSTITUTION) is False


def test_constraint_is_unique_per_channel_sku_and_kind(channel, catalog):
    ListingConstraint.objects.create(channel=channel, sku=catalog[0], kind=NO_SUBSTITUTION)
    ListingConstraint.objects.create(channel=channel, sku=None, kind=NO_SUBSTITUTION)

    with pytest.raises(IntegrityError):
        ListingConstraint.objects.create(channel=channel, sku=None, kind=NO_SUBSTITUTION)


def test_ops_manager_adds_constraint_in_admin_with_audit(client, ops, channel, catalog):
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_listingconstraint_add"),
        {
            "channel": channel.pk,
            "sku": catalog[0].pk,
            "kind": NO_SUBSTITUTION,
            "note": "Marketplace policy",
        },
    )

    assert response.status_code == 302
    constraint = ListingConstraint.objects.get()
    assert listing_forbids(channel=channel, sku=catalog[0], kind=NO_SUBSTITUTION) is True
    entry = AuditEntry.objects.get(action="listingconstraint.created")
    assert entry.actor == ops
    assert entry.target_id == str(constraint.pk)


def test_admin_reports_a_duplicate_constraint_as_form_error(client, ops, channel, catalog):
    ListingConstraint.objects.create(channel=channel, sku=None, kind=NO_SUBSTITUTION)
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_listingconstraint_add"),
        {"channel": channel.pk, "sku": "", "kind": NO_SUBSTITUTION, "note": ""},
    )

    assert response.status_code == 200
    assert b"The channel already has this constraint for all SKUs." in response.content
    assert ListingConstraint.objects.count() == 1


def test_sku_admin_edits_constraints_inline(client, ops, channel):
    sku = Sku.objects.create(code="TEE", title="Tee", price="10", currency="USD")
    client.force_login(ops)
    prefix = "listing_constraints"

    response = client.post(
        reverse("admin:catalog_sku_change", args=[sku.pk]),
        {
            "code": "TEE",
            "title": "Tee",
            "category": "",
            "is_active": "on",
            "price": "10.00",
            "cost": "",
            "currency": "USD",
            "attributes": "{}",
            "weight_grams": "",
            "length_mm": "",
            "width_mm": "",
            "height_mm": "",
            f"{prefix}-TOTAL_FORMS": "1",
            f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-0-channel": channel.pk,
            f"{prefix}-0-kind": NO_SUBSTITUTION,
            f"{prefix}-0-note": "",
        },
    )

    assert response.status_code == 302
    assert listing_forbids(channel=channel, sku=sku, kind=NO_SUBSTITUTION) is True
    assert AuditEntry.objects.filter(action="listingconstraint.created").count() == 1
    assert AuditEntry.objects.filter(action="sku.updated", actor=ops).count() == 1


def test_sku_admin_marks_sku_priority(client, ops):
    """Canaries can leave orders with a priority SKU on the active version; ops mark them here."""
    sku = Sku.objects.create(code="TEE", title="Tee", price="10", currency="USD")
    client.force_login(ops)

    response = client.post(
        reverse("admin:catalog_sku_change", args=[sku.pk]),
        {
            "code": "TEE",
            "title": "Tee",
            "category": "",
            "is_active": "on",
            "is_priority": "on",
            "price": "10.00",
            "cost": "",
            "currency": "USD",
            "attributes": "{}",
            "weight_grams": "",
            "length_mm": "",
            "width_mm": "",
            "height_mm": "",
            "listing_constraints-TOTAL_FORMS": "0",
            "listing_constraints-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    sku.refresh_from_db()
    assert sku.is_priority
    assert AuditEntry.objects.filter(action="sku.updated", actor=ops).count() == 1
