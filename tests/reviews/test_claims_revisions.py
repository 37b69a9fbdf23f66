"""Claiming items, and revising a proposal: the corrected value is stored and applied."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Sku
from guardrails.models import AuditEntry, ReviewOutcome
from orders.models import OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import (
    ReviewConflict,
    ReviewError,
    review_item_accept,
    review_item_claim,
    review_item_release,
    review_item_revise,
)
from tests.conftest import as_body, make_user, order_payload
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
    stock_set,
)
from tests.reviews.conftest import GOOD_ADDRESS, SUBSTITUTION, propose

pytestmark = pytest.mark.django_db


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- Claims ---------------------------------------------------------------------------------


def test_claim_assigns_for_the_settings_minutes(address_item, cs_manager):
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        item = review_item_claim(item_id=address_item.pk, user=cs_manager)

    assert item.assignee == cs_manager
    assert item.claimed_until == now + timedelta(minutes=10)


def test_foreign_claim_conflicts_until_expiry(address_item, cs_manager):
    other = make_user("maria", "cs_manager")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        review_item_claim(item_id=address_item.pk, user=cs_manager)

    with time_machine.travel(start + timedelta(minutes=9), tick=False):
        with pytest.raises(ReviewConflict) as raised:
            review_item_claim(item_id=address_item.pk, user=other)
        with pytest.raises(ReviewConflict):
            review_item_release(item_id=address_item.pk, user=other)
    assert raised.value.code == "claimed"
    assert "morgan" in raised.value.message
    until = timezone.localtime(start + timedelta(minutes=10)).strftime("%H:%M")
    assert until in raised.value.message

    with time_machine.travel(start + timedelta(minutes=10, seconds=1), tick=False):
        item = review_item_claim(item_id=address_item.pk, user=other)
    assert item.assignee == other


def test_claiming_again_extends_the_own_claim(address_item, cs_manager):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        review_item_claim(item_id=address_item.pk, user=cs_manager)
    with time_machine.travel(start + timedelta(minutes=8), tick=False):
        item = review_item_claim(item_id=address_item.pk, user=cs_manager)

    assert item.claimed_until == start + timedelta(minutes=18)


def test_release_clears_the_claim(address_item, cs_manager):
    review_item_claim(item_id=address_item.pk, user=cs_manager)

    item = review_item_release(item_id=address_item.pk, user=cs_manager)

    item.refresh_from_db()
    assert (item.assignee, item.claimed_until) == (None, None)


def test_closing_an_item_clears_its_claim(address_item, cs_manager):
    review_item_claim(item_id=address_item.pk, user=cs_manager)

    review_item_accept(item_id=address_item.pk, user=cs_manager)

    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.ACCEPTED
    assert (address_item.assignee, address_item.claimed_until) == (None, None)


def test_agent_without_the_role_cannot_claim(address_item, agent):
    from reviews.services import ReviewForbidden

    with pytest.raises(ReviewForbidden):
        review_item_claim(item_id=address_item.pk, user=agent)


def test_claim_and_release_over_the_api(address_item, cs_manager):
    other = make_user("maria", "cs_manager")

    response = api_for(cs_manager).post(f"/api/v1/review-items/{address_item.pk}/claim/")
    assert response.status_code == 200
    assert response.json()["assignee"] == "morgan"
    assert response.json()["claimed_until"] is not None

    response = api_for(other).post(f"/api/v1/review-items/{address_item.pk}/claim/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "claimed"

    response = api_for(cs_manager).post(f"/api/v1/review-items/{address_item.pk}/release/")
    assert response.status_code == 200
    assert response.json()["assignee"] is None


# --- Revisions ------------------------------------------------------------------------------


def test_revise_address_applies_the_reviewers_address(address_item, address_order, cs_manager):
    item = review_item_revise(
        item_id=address_item.pk, user=cs_manager, revision=GOOD_ADDRESS, note="called the customer"
    )

    address_order.refresh_from_db()
    assert address_order.shipping_address == GOOD_ADDRESS
    assert address_order.status == OrderStatus.READY
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.revision == GOOD_ADDRESS
    assert item.proposal["normalized"] != GOOD_ADDRESS
    assert item.decision["revised"] is True
    entry = AuditEntry.objects.get(action="review_item.revised", target_id=str(item.pk))
    assert entry.before == {"proposal": item.proposal}
    assert entry.after["revision"] == GOOD_ADDRESS
    assert entry.actor == cs_manager


# A held address as Shopify sends it, with the fields the revise form does not ask for.
FULL_WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "first_name": "Ada",
    "last_name": "Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province": "Texas",
    "province_code": "TX",
    "zip": "94105",
    "country": "United States",
    "country_code": "US",
    "phone": "+15125550100",
}


@pytest.fixture
def full_address_item(policies, channel, catalog, post_webhook) -> ReviewItem:
    post_webhook(as_body(order_payload(shipping_address=FULL_WRONG_ZIP_ADDRESS)))
    return ReviewItem.objects.get(kind=ReviewKind.ADDRESS)


def test_revise_keeps_phone_and_names(full_address_item, cs_manager):
    revision = {**GOOD_ADDRESS, "province_code": "tx", "country_code": "us"}

    item = review_item_revise(item_id=full_address_item.pk, user=cs_manager, revision=revision)

    expected = {
        **GOOD_ADDRESS,
        "first_name": "Ada",
        "last_name": "Quill",
        "province": "Texas",
        "country": "United States",
        "phone": "+15125550100",
    }
    assert item.order.shipping_address == expected
    assert item.revision == expected


def test_revise_address_drops_names_of_changed_fields(full_address_item, cs_manager):
    revision = {
        "name": "Bo Reyes",
        "address1": "1 Market St",
        "city": "San Francisco",
        "province_code": "CA",
        "zip": "94105",
        "country_code": "US",
    }

    item = review_item_revise(item_id=full_address_item.pk, user=cs_manager, revision=revision)

    assert item.order.shipping_address == {
        **revision,
        "country": "United States",
        "phone": "+15125550100",
    }


def test_revise_address_keeps_fields_the_revision_leaves_out(full_address_item, cs_manager):
    revision = {key: value for key, value in GOOD_ADDRESS.items() if key != "name"}

    item = review_item_revise(item_id=full_address_item.pk, user=cs_manager, revision=revision)

    address = item.order.shipping_address
    names = (address["name"], address["first_name"], address["last_name"])
    assert names == ("Ada Quill", "Ada", "Quill")


def test_revise_address_clears_an_emptied_field(full_address_item, cs_manager):
    item = review_item_revise(
        item_id=full_address_item.pk, user=cs_manager, revision={**GOOD_ADDRESS, "name": ""}
    )

    address = item.order.shipping_address
    assert not {"name", "first_name", "last_name"} & set(address)
    assert address["phone"] == "+15125550100"


def test_revise_address_refuses_overlong_field(address_item, cs_manager):
    with pytest.raises(ReviewError) as raised:
        review_item_revise(
            item_id=address_item.pk, user=cs_manager, revision={**GOOD_ADDRESS, "name": "A" * 201}
        )

    assert (raised.value.code, raised.value.field) == ("invalid_revision", "name")
    assert "201" in raised.value.message


def test_revise_invalid_zip_names_field(address_item, cs_manager):
    with pytest.raises(ReviewError) as raised:
        review_item_revise(
            item_id=address_item.pk, user=cs_manager, revision={**GOOD_ADDRESS, "zip": "94105"}
        )

    assert (raised.value.code, raised.value.field) == ("invalid_revision", "zip")
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.OPEN
    assert address_item.revision is None


def test_revise_address_rejects_unknown_fields(address_item, cs_manager):
    with pytest.raises(ReviewError) as raised:
        review_item_revise(
            item_id=address_item.pk, user=cs_manager, revision={**GOOD_ADDRESS, "floor": "3"}
        )

    assert raised.value.code == "invalid_revision"
    assert "floor" in raised.value.message


def test_revise_over_the_api_reports_the_field(address_item, cs_manager):
    client = api_for(cs_manager)
    url = f"/api/v1/review-items/{address_item.pk}/revise/"

    bad = client.post(url, {"revision": {**GOOD_ADDRESS, "zip": "94105"}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_revision"
    assert list(bad.json()["error"]["fields"]) == ["zip"]

    not_object = client.post(url, {"revision": "12 Birch Ln"}, format="json")
    assert not_object.status_code == 400
    assert list(not_object.json()["error"]["fields"]) == ["revision"]

    good = client.post(url, {"revision": GOOD_ADDRESS, "note": "fixed"}, format="json")
    assert good.status_code == 200
    assert good.json()["revision"] == GOOD_ADDRESS
    assert good.json()["status"] == "accepted"


def test_revise_substitution_applies_another_sku_and_records_disagreement(order, agent, locations):
    sku = Sku.objects.create(
        code="TEE-CLASSIC-GRY-M", title="Classic Cotton T-Shirt - Grey / M", price="19.99"
    )
    stock_set(sku.code, locations["wh-east"], 4)
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    item = review_item_revise(
        item_id=decision.review_item_id, user=agent, revision={"sku": "TEE-CLASSIC-GRY-M"}
    )

    assert order.lines.get().sku.code == "TEE-CLASSIC-GRY-M"
    decision.refresh_from_db()
    assert decision.after == SUBSTITUTION[1]
    assert decision.review_outcome == ReviewOutcome.DISAGREED
    assert decision.reviewed_at is not None
    item.refresh_from_db()
    assert item.revision == {"sku": "TEE-CLASSIC-GRY-M"}
    assert item.decision["revised"] is True
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert AuditEntry.objects.filter(
        action="decision.revised", target_id=str(decision.pk)
    ).get().after == {"line": 1, "sku": "TEE-CLASSIC-GRY-M"}


def test_revise_substitution_refuses_an_inactive_sku(order, agent):
    Sku.objects.create(code="OLD-TEE", title="Old tee", price="9.99", is_active=False)
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    with pytest.raises(ReviewError) as raised:
        review_item_revise(item_id=decision.review_item_id, user=agent, revision={"sku": "OLD-TEE"})

    assert (raised.value.code, raised.value.field) == ("invalid_revision", "sku")


def test_revise_carrier_proposal(order, agent):
    decision = propose(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
        confidence=Decimal("0.5"),
    )

    review_item_revise(
        item_id=decision.review_item_id, user=agent, revision={"carrier_service": "fedex/2day"}
    )

    order.refresh_from_db()
    assert f"{order.carrier_service.carrier.code}/{order.carrier_service.code}" == "fedex/2day"
    decision.refresh_from_db()
    assert decision.review_outcome == ReviewOutcome.DISAGREED


def test_revise_unmapped_sku_picks_another_sku(policies, channel, catalog, post_webhook, agent):
    lines = [{"id": 1, "sku": "TEE-BLK-M", "title": "Tee", "quantity": 1, "price": "19.99"}]
    post_webhook(as_body(order_payload(line_items=lines)))
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)
    mug = Sku.objects.get(code="MUG-ENAMEL-NVY-OS")

    review_item_revise(item_id=item.pk, user=agent, revision={"sku_id": mug.pk})

    item.refresh_from_db()
    assert item.order.lines.get().sku == mug
    assert item.revision == {"sku_id": mug.pk}
    assert item.status == ReviewStatus.ACCEPTED


def test_revise_unsupported_kind(order, agent):
    item = ReviewItem.objects.create(
        kind=ReviewKind.OUT_OF_STOCK,
        order=order,
        order_line=order.lines.get(),
        reason="Short.",
        source_data={},
    )

    with pytest.raises(ReviewError) as raised:
        review_item_revise(item_id=item.pk, user=agent, revision={"sku": "TEE-CLASSIC-WHT-M"})

    assert raised.value.code == "revise_not_supported"


def test_accepting_a_decision_item_records_agreement(order, agent):
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    review_item_accept(item_id=decision.review_item_id, user=agent)

    decision.refresh_from_db()
    assert decision.review_outcome == ReviewOutcome.AGREED
