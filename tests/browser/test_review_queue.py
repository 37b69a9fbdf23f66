"""The review queue in a real Chromium: log in, accept and reject items, CSRF and role checks.

Orders arrive through the real Shopify webhook (the replayed samples), so each queue item and
its candidate SKUs come from the same pipeline as in production.
"""

import os

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

try:
    from playwright.sync_api import Page, expect
except ImportError:
    # The browser fixture reports a missing Chromium. Playwright itself is reported here,
    # because this module imports it.
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "Playwright is not installed, and OMSGUARD_REQUIRE_BROWSER=1 makes the browser "
            "tests mandatory: pip install -e '.[dev]'.",
            pytrace=False,
        )
    pytest.skip("Playwright is not installed (pip install -e '.[dev]').", allow_module_level=True)

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind
from catalog.services import channel_upsert
from orders.demo import demo_catalog_load, demo_mappings_create, shopify_samples_replay
from orders.models import OrderStatus
from reviews.models import ReviewItem, ReviewStatus

# live_server serves from another thread, so the data must be committed: each test runs on a
# transactional database, which is flushed afterwards. The flush also drops the role groups
# of the data migration, and the `agent` fixture creates them again.
pytestmark = pytest.mark.django_db(transaction=True)

# Sample 02-unmapped-sku.json: order #1002 is on hold only because this channel SKU has no
# mapping, and its item is the oldest in the queue. The matcher ranks this catalog SKU first.
UNMAPPED_CHANNEL_SKU = "TSHIRT-CLASSIC-BLACK-MED"
BEST_CANDIDATE_SKU = "TEE-CLASSIC-BLK-M"
CSRF_EXPIRED_MESSAGE = "Your session's security token has expired."


@pytest.fixture
def shop(transactional_db) -> Channel:
    """The demo catalog and a Shopify channel that received every sample order."""
    demo_catalog_load()
    channel, _ = channel_upsert(kind=ChannelKind.SHOPIFY, code="demo", secret="browser-secret")
    demo_mappings_create(channel=channel)

    results = shopify_samples_replay(channel=channel)

    assert [result.status_code for result in results] == [200] * len(results)
    return channel


@pytest.fixture
def held_item(shop: Channel) -> ReviewItem:
    """The open review item that is the only reason order #1002 is on hold."""
    item = ReviewItem.objects.select_related("order").get(
        order__channel=shop, order_line__channel_sku=UNMAPPED_CHANNEL_SKU
    )
    assert item.status == ReviewStatus.OPEN
    assert item.order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in item.order.hold_reasons] == ["unmapped_sku"]
    return item


def log_in(page: Page, base_url: str, user: User) -> None:
    """Log in through the login form, which redirects to the review queue."""
    page.goto(f"{base_url}{reverse('login')}")
    page.get_by_label("User name").fill(user.get_username())
    page.get_by_label("Password").fill("pw-" + user.get_username())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{reverse('reviews:queue')}")


def open_item_count() -> int:
    return ReviewItem.objects.filter(status=ReviewStatus.OPEN).count()


def test_agent_accepts_item(live_server, page: Page, held_item: ReviewItem, agent: User):
    log_in(page, live_server.url, agent)
    open_count = int(page.locator("#open-count").inner_text())
    first_card = page.locator("li.item").first

    assert open_count == open_item_count()
    expect(first_card).to_have_attribute("id", f"item-{held_item.pk}")

    first_card.get_by_role("button", name="Accept", exact=True).click()

    decided_card = page.locator(f'#item-{held_item.pk}[data-status="accepted"]')
    expect(decided_card).to_be_visible()
    expect(decided_card).to_contain_text(f"mapped to {BEST_CANDIDATE_SKU}")
    expect(page.locator("#open-count")).to_have_text(str(open_count - 1))
    expect(page.locator("#flash")).to_be_empty()

    held_item.refresh_from_db()
    assert held_item.status == ReviewStatus.ACCEPTED
    assert held_item.decided_by == agent
    mapping = ChannelSkuMapping.objects.select_related("sku").get(
        channel=held_item.order.channel_id,
        id_kind=ExternalIdKind.SKU,
        external_id=UNMAPPED_CHANNEL_SKU,
    )
    assert mapping.sku.code == BEST_CANDIDATE_SKU
    order = held_item.order
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert open_item_count() == open_count - 1


def test_agent_rejects_item(live_server, page: Page, held_item: ReviewItem, agent: User):
    log_in(page, live_server.url, agent)
    open_count = int(page.locator("#open-count").inner_text())
    first_card = page.locator("li.item").first

    assert open_count == open_item_count()
    expect(first_card).to_have_attribute("id", f"item-{held_item.pk}")

    first_card.get_by_role("button", name="Reject", exact=True).click()

    decided_card = page.locator(f'#item-{held_item.pk}[data-status="rejected"]')
    expect(decided_card).to_be_visible()
    expect(decided_card).to_contain_text("stays on hold")
    expect(page.locator("#open-count")).to_have_text(str(open_count - 1))
    expect(page.locator("#flash")).to_be_empty()

    held_item.refresh_from_db()
    assert held_item.status == ReviewStatus.REJECTED
    assert held_item.decided_by == agent
    assert not ChannelSkuMapping.objects.filter(external_id=UNMAPPED_CHANNEL_SKU).exists()
    order = held_item.order
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["review_rejected"]
    assert open_item_count() == open_count - 1


@pytest.mark.parametrize("break_csrf", ["stale_header_token", "csrf_cookie_missing"])
def test_stale_csrf_token_shows_fragment(
    live_server, page: Page, held_item: ReviewItem, agent: User, break_csrf: str
):
    log_in(page, live_server.url, agent)
    open_count = page.locator("#open-count").inner_text()
    card = page.locator(f"#item-{held_item.pk}")
    card_html = card.evaluate("element => element.outerHTML")

    if break_csrf == "stale_header_token":
        # htmx reads hx-headers when it sends a request, so the next POST carries this token.
        page.evaluate(
            """() => document.body.setAttribute("hx-headers", '{"X-CSRFToken": "stale"}')"""
        )
    else:
        # The page keeps a valid token, but the cookie it must match is gone, as after the
        # browser dropped its cookies. The session cookie stays, so the user is still logged in.
        page.context.clear_cookies(name="csrftoken")
    card.get_by_role("button", name="Accept", exact=True).click()

    flash = page.locator('#flash [data-code="csrf_failed"]')
    expect(flash).to_contain_text(CSRF_EXPIRED_MESSAGE)
    expect(flash.get_by_role("link", name="Reload")).to_be_visible()
    assert card.evaluate("element => element.outerHTML") == card_html
    expect(page.locator("#open-count")).to_have_text(open_count)
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()

    held_item.refresh_from_db()
    assert held_item.status == ReviewStatus.OPEN
    assert held_item.decided_by is None
    assert not ChannelSkuMapping.objects.filter(external_id=UNMAPPED_CHANNEL_SKU).exists()


def test_user_without_role_is_forbidden(live_server, page: Page, shop: Channel, outsider: User):
    log_in(page, live_server.url, outsider)

    response = page.goto(f"{live_server.url}{reverse('reviews:queue')}")

    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("li.item")).to_have_count(0)


def test_view_only_user_cannot_decide(live_server, page: Page, held_item: ReviewItem):
    viewers = Group.objects.create(name="queue_viewers")
    viewers.permissions.add(
        Permission.objects.get(content_type__app_label="reviews", codename="view_reviewitem")
    )
    viewer = User.objects.create_user(username="victor", password="pw-victor")
    viewer.groups.add(viewers)

    log_in(page, live_server.url, viewer)

    expect(page.locator("li.item")).to_have_count(open_item_count())
    expect(page.locator(".notice")).to_have_text("You can view this queue but not decide items.")
    expect(page.locator("li.item button")).to_have_count(0)

    # Without buttons the browser can still send the request that Accept would send.
    result = page.evaluate(
        """async (url) => {
            const headers = JSON.parse(document.body.getAttribute("hx-headers"));
            headers["HX-Request"] = "true";
            const response = await fetch(url, {method: "POST", headers: headers});
            return {status: response.status, body: await response.text()};
        }""",
        reverse("reviews:accept", kwargs={"item_id": held_item.pk}),
    )

    assert result["status"] == 403
    assert "You do not have permission to decide review items." in result["body"]
    held_item.refresh_from_db()
    assert held_item.status == ReviewStatus.OPEN
    assert not ChannelSkuMapping.objects.filter(external_id=UNMAPPED_CHANNEL_SKU).exists()
