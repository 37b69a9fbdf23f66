"""A person's address correction with bidirectional controls is rejected, naming the field:
a reviewer's revision (API and queue form) and a customer's correction on the confirmation page.
"""

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from guardrails.models import AuditEntry
from reviews.models import AddressConfirmation, ReviewItem, ReviewStatus
from tests.reviews.conftest import GOOD_ADDRESS, WRONG_ZIP_ADDRESS
from tests.reviews.test_address_confirmation import (  # noqa: F401
    GOOD_FIELDS,
    customer_fixture,
    held_order_fixture,
    link_path,
    post_form,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    ("field", "value", "controls"),
    [
        ("address1", "12 \u202eBirch Ln\u202c", "U+202E, U+202C"),
        ("name", "Ada \u2067Quill\u2069", "U+2067, U+2069"),
        ("city", "Aus\u202dtin", "U+202D"),
        ("zip", "787\u202a01", "U+202A"),
    ],
)
def test_api_revision_with_bidi_is_400(address_item, cs_manager, field, value, controls):
    revision = {**GOOD_ADDRESS, field: value}

    response = api_for(cs_manager).post(
        f"/api/v1/review-items/{address_item.pk}/revise/",
        json.dumps({"revision": revision}),
        content_type="application/json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_revision"
    assert list(error["fields"]) == [field]
    assert error["fields"][field] == [
        f"Contains Unicode bidirectional control characters ({controls}), which can make "
        "the text display in another order. Remove them."
    ]
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.OPEN
    assert address_item.order.shipping_address == WRONG_ZIP_ADDRESS
    assert not AuditEntry.objects.filter(action="review_item.revised").exists()


def test_queue_form_revision_with_bidi_is_form_error(address_item, cs_manager):
    client = Client()
    client.force_login(cs_manager)
    data = {**GOOD_ADDRESS, "address2": "Apt \u202e4B"}

    response = client.post(reverse("reviews:revise", args=[address_item.pk]), data, headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == f"#revise-{address_item.pk}"
    assert "Contains Unicode bidirectional control characters (U+202E)" in html
    assert 'data-code="invalid_revision"' in html
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.OPEN
    assert address_item.order.shipping_address == WRONG_ZIP_ADDRESS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Ada \u202eQuill"),
        ("address1", "12 Birch \u2066Lane\u2069"),
        ("city", "Aus\u202btin"),
    ],
)
def test_customer_correction_with_bidi_is_form_error(
    held_order, mailoutbox, customer, field, value
):
    path = link_path(mailoutbox[0])

    response = post_form(customer, path, {"action": "correct", **GOOD_FIELDS, field: value})

    html = response.content.decode()
    assert response.status_code == 400
    assert "invisible characters that change the text direction" in html
    confirmation = AddressConfirmation.objects.get()
    assert confirmation.answered_at is None
    assert confirmation.corrected_address is None
    assert ReviewItem.objects.get().status == ReviewStatus.OPEN
    held_order.refresh_from_db()
    assert held_order.shipping_address == WRONG_ZIP_ADDRESS
