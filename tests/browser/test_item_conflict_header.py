"""Two reviewers on one item page in Chromium: the second one's 409 updates the page's header."""

import os
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "Playwright is not installed, and OMSGUARD_REQUIRE_BROWSER=1 makes the browser "
            "tests mandatory: pip install -e '.[dev]'.",
            pytrace=False,
        )
    pytest.skip("Playwright is not installed (pip install -e '.[dev]').", allow_module_level=True)

from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.browser.conftest import PAGE_TIMEOUT_MS
from tests.browser.test_queue_keys_and_header import open_item_page
from tests.conftest import make_user
from tests.reviews.test_queue_views import hold_orders

# The live server reads committed data from another thread, so each test commits its data.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def second_page(browser: "Browser") -> Iterator["Page"]:
    """A page in a browser context of its own, so it has its own session cookie."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def test_conflict_updates_item_header(
    live_server, page: Page, second_page: Page, agent: User, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)
    bob = make_user("bob", "cs_agent")
    open_item_page(page, live_server.url, agent, item)
    open_item_page(second_page, live_server.url, bob, item)
    state = page.locator(".item-state")
    expect(state.locator(".badge")).to_have_text("Open")

    # Bob rejects first. Alice's page still shows the item as open.
    second_page.keyboard.press("r")
    expect(second_page.locator(f'#item-{item.pk}[data-status="rejected"]')).to_be_visible()
    expect(state.locator(".badge")).to_have_text("Open")

    page.keyboard.press("a")

    expect(page.locator("#flash")).to_contain_text(
        f"Review item #{item.pk} was already rejected by bob."
    )
    expect(state.locator(".badge")).to_have_text("Rejected")
    expect(page.locator(".notice.decided")).to_contain_text("Rejected by bob at ")
    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert item.decided_by == bob
