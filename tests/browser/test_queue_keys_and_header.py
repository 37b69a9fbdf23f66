"""The revise form's keys and the item page's status line after a decision, in a real Chromium.

Covers the caret in the prefilled revise field, Enter in the carrier-code form's <select>, and
the item page's status line, which a decision replaces out of band.
"""

import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

try:
    from playwright.sync_api import ConsoleMessage, Page, expect
except ImportError:
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "Playwright is not installed, and OMSGUARD_REQUIRE_BROWSER=1 makes the browser "
            "tests mandatory: pip install -e '.[dev]'.",
            pytrace=False,
        )
    pytest.skip("Playwright is not installed (pip install -e '.[dev]').", allow_module_level=True)

from guardrails.defaults import default_policies_load
from orders.models import CarrierService
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.browser.test_queue_pages import log_in
from tests.conftest import ensure_role_groups
from tests.orders.test_carriers import post_order
from tests.reviews.test_queue_pages import order_with_lines, substitution_item
from tests.reviews.test_queue_views import hold_orders

# The live server reads committed data from another thread, so each test commits its data.
pytestmark = pytest.mark.django_db(transaction=True)

# A shipping line whose title names a reference service, so the item suggests that service.
EXPEDITED_LINE = {"code": "EXP-7", "title": "Canada Post Expedited Parcel", "source": "canada_post"}


@pytest.fixture
def policies(transactional_db) -> None:
    """The default policies and role groups, which name the role that may decide each item.

    The flush after a transactional test drops the data migrations' rows, so load them again.
    """
    ensure_role_groups()
    default_policies_load()


def open_item_page(page: Page, base_url: str, user: User, item: ReviewItem) -> None:
    log_in(page, base_url, user)
    page.goto(f"{base_url}{reverse('reviews:item', args=[item.pk])}")
    expect(page.locator(f"#item-{item.pk}")).to_have_attribute("aria-selected", "true")


def test_revise_key_selects_prefilled_value(
    live_server, page: Page, agent: User, policies, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)
    # The revise form is prefilled with the best candidate's SKU code.
    prefilled = item.proposal["candidates"][0]["code"]
    assert prefilled
    field = page.locator(f"#revise-{item.pk}-sku")
    open_item_page(page, live_server.url, agent, item)

    page.keyboard.press("e")

    expect(field).to_be_focused()
    selection = field.evaluate("input => [input.selectionStart, input.selectionEnd]")
    assert selection == [0, len(prefilled)]
    page.keyboard.type("NOPE-SKU")
    expect(field).to_have_value("NOPE-SKU")

    # End leaves the selection with the caret behind the value, for an edit of its tail.
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    page.keyboard.press("End")
    page.keyboard.type("-2")
    expect(field).to_have_value("NOPE-SKU-2")


def test_enter_in_carrier_select_saves(
    live_server, page: Page, agent: User, policies, channel, catalog, post_webhook
):
    post_order(post_webhook, 1, shipping_lines=[EXPEDITED_LINE])
    item = ReviewItem.objects.get(kind=ReviewKind.CARRIER_CODE)
    suggested = item.proposal["suggested_service_id"]
    chosen = next(
        service["service_id"]
        for service in item.proposal["services"]
        if service["service_id"] != suggested
    )
    select = page.locator(f"#revise-{item.pk}-service_id")
    open_item_page(page, live_server.url, agent, item)

    page.keyboard.press("e")
    expect(select).to_be_focused()
    select.select_option(str(chosen))
    select.focus()
    page.keyboard.press("Enter")

    decided = page.locator(f'#item-{item.pk}[data-status="accepted"]')
    expect(decided).to_contain_text("revised")
    expect(decided).to_contain_text(CarrierService.objects.get(pk=chosen).name)
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.revision == {"service_id": chosen}
    assert item.decided_by == agent


@pytest.mark.parametrize(("key", "status"), [("a", "Accepted"), ("r", "Rejected")])
def test_decision_updates_item_page_status(
    live_server,
    page: Page,
    agent: User,
    policies,
    channel,
    catalog,
    post_webhook,
    key: str,
    status: str,
):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)
    ReviewItem.objects.filter(pk=item.pk).update(due_at=timezone.now() + timedelta(hours=2))
    state = page.locator(".item-state")
    open_item_page(page, live_server.url, agent, item)
    expect(state.locator(".badge")).to_have_text("Open")
    expect(state.locator("time.countdown")).to_contain_text("left")

    page.keyboard.press(key)

    expect(page.locator(f"#item-{item.pk}.decided")).to_be_visible()
    expect(state.locator(".badge")).to_have_text(status)
    expect(state.locator("time.countdown")).to_have_count(0)
    expect(state).not_to_contain_text("Deadline")
    expect(page.locator(".notice.decided")).to_contain_text(f"{status} by alice at ")
    expect(page.locator(".item-status")).to_have_count(1)
    item.refresh_from_db()
    assert item.get_status_display() == status


def test_list_decision_sends_no_status_line(
    live_server, page: Page, agent: User, policies, channel, catalog
):
    item = substitution_item(order_with_lines(channel, 1))
    errors: list[str] = []

    def record_error(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", record_error)
    log_in(page, live_server.url, agent)
    page.goto(f"{live_server.url}{reverse('reviews:queue_kind', args=['substitution'])}")

    reject_path = reverse("reviews:reject", args=[item.pk])
    with page.expect_response(lambda response: response.url.endswith(reject_path)) as rejected:
        page.keyboard.press("j")
        page.keyboard.press("r")

    expect(page.locator(f'#item-{item.pk}[data-status="rejected"]')).to_be_visible()
    # A status line in the response would find no target on a list page, and htmx logs that.
    assert "item-status" not in rejected.value.text()
    assert errors == []
