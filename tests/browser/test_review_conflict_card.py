"""Two reviewers on one item page in Chromium: the second one's 409 replaces the stale card."""

import os
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect
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


@pytest.fixture
def item(channel, catalog, post_webhook) -> ReviewItem:
    hold_orders(post_webhook, 1)
    return ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)


def _htmx_errors(page: Page) -> list[str]:
    """Collect the errors htmx logs, such as htmx:oobErrorNoTarget for a swap without target.

    Chromium's own "Failed to load resource" line for the expected 409 is left out.
    """
    errors: list[str] = []

    def record(message: ConsoleMessage) -> None:
        if message.type == "error" and message.text.startswith("htmx:"):
            errors.append(message.text)

    page.on("console", record)
    return errors


def _reject_as_bob(second_page: Page, live_server_url: str, item: ReviewItem) -> None:
    open_item_page(second_page, live_server_url, make_user("bob", "cs_agent"), item)
    second_page.keyboard.press("r")
    expect(second_page.locator(f'#item-{item.pk}[data-status="rejected"]')).to_be_visible()


def test_conflict_replaces_card_buttons(
    live_server, page: Page, second_page: Page, agent: User, item: ReviewItem
):
    errors = _htmx_errors(page)
    open_item_page(page, live_server.url, agent, item)
    card = page.locator(f"#item-{item.pk}")
    expect(card.locator('[data-action="accept"]')).to_be_visible()

    _reject_as_bob(second_page, live_server.url, item)
    # Alice's page still offers the buttons of the open item until she acts.
    expect(card.locator('[data-action="accept"]')).to_be_visible()

    page.keyboard.press("a")

    expect(page.locator("#flash")).to_contain_text(
        f"Review item #{item.pk} was already rejected by bob."
    )
    expect(card).to_have_attribute("data-status", "rejected")
    expect(card).to_contain_text("by bob: order #1001 stays on hold.")
    expect(card.locator("[data-action]")).to_have_count(0)
    expect(card.locator("[hx-post]")).to_have_count(0)
    expect(card.locator(".revise-form")).to_have_count(0)
    # The new card is selected, so the keys keep working on it.
    expect(card).to_have_attribute("aria-selected", "true")
    assert errors == [], errors
    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED


def test_conflict_removes_open_revise_form(
    live_server, page: Page, second_page: Page, agent: User, item: ReviewItem
):
    errors = _htmx_errors(page)
    open_item_page(page, live_server.url, agent, item)
    form = page.locator(f"#revise-{item.pk}")
    page.keyboard.press("e")
    expect(form).to_be_visible()

    _reject_as_bob(second_page, live_server.url, item)
    page.locator(f"#revise-{item.pk} button[type=submit]").click()

    expect(page.locator("#flash")).to_contain_text("was already rejected by bob.")
    expect(form).to_have_count(0)
    expect(page.locator(f"#item-{item.pk}")).to_have_attribute("data-status", "rejected")
    assert errors == [], errors
    item.refresh_from_db()
    assert item.revision is None
