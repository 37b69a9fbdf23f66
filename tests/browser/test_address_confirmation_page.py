"""The customer's address confirmation page on a phone-sized screen: a valid link confirms,
a tampered one and an expired one say so."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

try:
    from playwright.sync_api import Browser, expect
except ImportError:  # the browser fixture skips or fails the tests with the reason
    Browser = expect = None

from guardrails.defaults import default_policies_load
from orders.models import Order, OrderStatus
from reviews.confirmations import address_confirmation_token
from reviews.models import AddressConfirmation, ReviewItem, ReviewStatus
from tests.conftest import as_body, ensure_role_groups, order_payload
from tests.reviews.test_address_confirmation import FIXABLE_ADDRESS

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def confirmation(transactional_db, settings, channel, catalog, post_webhook) -> AddressConfirmation:
    """An order held for an address whose proposed correction is valid, and its link."""
    ensure_role_groups()
    default_policies_load()
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.85"
    post_webhook(as_body(order_payload(shipping_address=FIXABLE_ADDRESS)))
    return AddressConfirmation.objects.get()


def phone_page(browser: "Browser"):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    return context, context.new_page()


def confirm_url(live_server, confirmation: AddressConfirmation, token: str | None = None) -> str:
    token = token or address_confirmation_token(confirmation)
    return f"{live_server.url}{reverse('confirm:address', args=[token])}"


def test_phone_confirm_releases_order(live_server, browser, confirmation):
    context, page = phone_page(browser)

    page.goto(confirm_url(live_server, confirmation))
    button = page.get_by_role("button", name="Confirm this address")
    box = button.bounding_box()
    button.tap()

    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    context.close()
    assert box["width"] <= PHONE["width"]
    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.shipping_address == confirmation.proposed_address
    assert ReviewItem.objects.get().status == ReviewStatus.RESOLVED


def test_tampered_link_is_refused(live_server, browser, confirmation):
    context, page = phone_page(browser)
    token = address_confirmation_token(confirmation)

    response = page.goto(confirm_url(live_server, confirmation, token[:-2] + "xx"))

    assert response.status == 404
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    context.close()
    assert AddressConfirmation.objects.get().answered_at is None


def test_expired_link_says_so(live_server, browser, confirmation):
    AddressConfirmation.objects.filter(pk=confirmation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    context, page = phone_page(browser)

    response = page.goto(confirm_url(live_server, confirmation))

    assert response.status == 410
    expect(page.get_by_role("heading", name="This link has expired")).to_be_visible()
    expect(page.get_by_role("button", name="Confirm this address")).to_have_count(0)
    context.close()
    assert Order.objects.get().status == OrderStatus.ON_HOLD
