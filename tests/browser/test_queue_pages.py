"""The queue pages in a real Chromium: filters, keyboard decisions, roles, races, SLAs and CSRF."""

import os
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

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

from catalog.models import Sku
from guardrails.defaults import default_policies_load
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.sla import review_items_sla_sweep
from tests.browser.conftest import PAGE_TIMEOUT_MS
from tests.conftest import as_body, ensure_role_groups, make_user, order_payload
from tests.orders.test_addresses_review import WRONG_ZIP_ADDRESS
from tests.reviews.test_queue_pages import order_with_lines, substitution_item
from tests.reviews.test_queue_views import hold_orders

# The live server reads committed data from another thread; see test_review_queue.py.
pytestmark = pytest.mark.django_db(transaction=True)

CSRF_EXPIRED_MESSAGE = "Your session's security token has expired."


def log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}{reverse('login')}")
    page.get_by_label("User name").fill(user.get_username())
    page.get_by_label("Password").fill("pw-" + user.get_username())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{reverse('reviews:queue')}")


def open_count(kind: str | None = None) -> int:
    items = ReviewItem.objects.filter(status=ReviewStatus.OPEN)
    return items.filter(kind=kind).count() if kind else items.count()


def forced_post(page: Page, url: str, form: dict | None = None) -> dict:
    """POST like htmx would, with the page's CSRF header, whatever buttons the page shows."""
    return page.evaluate(
        """async ([url, form]) => {
            const headers = JSON.parse(document.body.getAttribute("hx-headers"));
            headers["HX-Request"] = "true";
            const body = new URLSearchParams(form || {});
            const response = await fetch(url, {method: "POST", headers: headers, body: body});
            return {status: response.status, body: await response.text()};
        }""",
        [url, form],
    )


@pytest.fixture
def policies(transactional_db) -> None:
    """The default policies, which name each action's approver role.

    The flush after a transactional test drops the data migration's rows, so load them again.
    """
    ensure_role_groups()
    default_policies_load()


@pytest.fixture
def unmapped_items(policies, channel, catalog, post_webhook) -> list[ReviewItem]:
    """Three orders held on the same unmapped channel SKU, plus an open substitution item."""
    hold_orders(post_webhook, 3)
    substitution_item(order_with_lines(channel, 1, number="#sub"))
    return list(ReviewItem.objects.filter(kind=ReviewKind.UNMAPPED_SKU).order_by("pk"))


def test_filter_then_accept_and_reject_with_keyboard(
    live_server, page: Page, agent: User, unmapped_items: list[ReviewItem]
):
    log_in(page, live_server.url, agent)
    total = open_count()
    expect(page.locator("#open-count")).to_have_text(str(total))

    page.get_by_label("Kind").select_option("unmapped_sku")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/queue/\?.*kind=unmapped_sku"))
    rows = page.locator("ol.items > li.item")
    expect(rows).to_have_count(len(unmapped_items))

    page.keyboard.press("j")
    first = page.locator(f"#item-{unmapped_items[0].pk}")
    expect(first).to_have_attribute("aria-selected", "true")
    expect(first).to_be_focused()
    page.keyboard.press("a")
    expect(page.locator(f'#item-{unmapped_items[0].pk}[data-status="accepted"]')).to_be_visible()

    # Accepting the first mapped the channel SKU, which settled the other items on it too.
    expect(page.locator("#open-count")).to_have_text(str(open_count()))
    expect(page.locator("#kind-count-unmapped_sku")).to_have_text(
        str(open_count(ReviewKind.UNMAPPED_SKU))
    )
    assert open_count() < total
    assert ReviewItem.objects.get(pk=unmapped_items[0].pk).status == ReviewStatus.ACCEPTED


def test_reject_with_keyboard_updates_count(
    live_server, page: Page, agent: User, unmapped_items: list[ReviewItem]
):
    log_in(page, live_server.url, agent)
    page.goto(f"{live_server.url}{reverse('reviews:queue_kind', args=['substitution'])}")
    item = ReviewItem.objects.get(kind=ReviewKind.SUBSTITUTION)
    before = open_count()

    page.keyboard.press("j")
    expect(page.locator(f"#item-{item.pk}")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("r")

    expect(page.locator(f'#item-{item.pk}[data-status="rejected"]')).to_be_visible()
    expect(page.locator("#open-count")).to_have_text(str(before - 1))
    expect(page.locator("#kind-count-substitution")).to_have_text("0")
    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert item.decided_by == agent


def test_keys_ignored_while_typing_a_note(
    live_server, page: Page, agent: User, unmapped_items: list[ReviewItem]
):
    log_in(page, live_server.url, agent)
    item = unmapped_items[0]

    page.locator(f"#note-{item.pk}").fill("")
    page.locator(f"#note-{item.pk}").press_sequentially("a rare jar")

    expect(page.locator(f"#note-{item.pk}")).to_have_value("a rare jar")
    expect(page.locator(f'#item-{item.pk}[data-status="accepted"]')).to_have_count(0)
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_revise_with_keyboard_only(
    live_server, page: Page, agent: User, unmapped_items: list[ReviewItem]
):
    log_in(page, live_server.url, agent)
    page.goto(f"{live_server.url}{reverse('reviews:queue_kind', args=['unmapped_sku'])}")
    item = unmapped_items[0]
    form = page.locator(f"#revise-{item.pk}")
    field = page.locator(f"#revise-{item.pk}-sku")

    page.keyboard.press("j")
    page.keyboard.press("e")
    expect(form).to_be_visible()
    expect(field).to_be_focused()
    page.keyboard.press("Escape")
    expect(form).to_be_hidden()
    expect(page.locator(f"#item-{item.pk}")).to_be_focused()

    page.keyboard.press("e")
    page.keyboard.press("Control+A")
    page.keyboard.type("NO-SUCH-SKU")
    page.keyboard.press("Enter")
    expect(form).to_contain_text("No active SKU has the code 'NO-SUCH-SKU'.")
    expect(page.locator('#flash [data-code="invalid_revision"]')).to_be_visible()
    # The returned form is swapped in; htmx must bind it before Enter submits it, or the
    # browser would submit it as a plain GET form.
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )

    page.locator(f"#revise-{item.pk}-sku").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("TEE-CLASSIC-WHT-M")
    page.keyboard.press("Enter")

    decided = page.locator(f'#item-{item.pk}[data-status="accepted"]')
    expect(decided).to_contain_text("revised")
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.revision == {"sku_id": Sku.objects.get(code="TEE-CLASSIC-WHT-M").pk}


def test_agent_address_item_read_only(
    live_server, page: Page, agent: User, policies, channel, catalog, post_webhook
):
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    item = ReviewItem.objects.get(kind=ReviewKind.ADDRESS)
    log_in(page, live_server.url, agent)

    page.goto(f"{live_server.url}{reverse('reviews:item', args=[item.pk])}")

    expect(page.locator('[data-code="read_only"]')).to_contain_text("only CS manager may")
    expect(page.locator(f"#item-{item.pk} button")).to_have_count(0)
    page.keyboard.press("j")
    page.keyboard.press("a")
    result = forced_post(page, reverse("reviews:accept", args=[item.pk]))

    assert result["status"] == 403
    assert "Only the CS manager role may decide" in result["body"]
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN
    assert Order.objects.get(pk=item.order_id).status == OrderStatus.ON_HOLD


def test_second_agent_gets_already_decided_message(
    live_server, browser: Browser, agent: User, unmapped_items: list[ReviewItem]
):
    item = unmapped_items[0]
    bob = make_user("bob", "cs_agent")
    pages = []
    for user in (agent, bob):
        context = browser.new_context()
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        user_page = context.new_page()
        log_in(user_page, live_server.url, user)
        user_page.goto(f"{live_server.url}{reverse('reviews:item', args=[item.pk])}")
        pages.append(user_page)
    alice_page, bob_page = pages

    try:
        alice_page.locator(f'#item-{item.pk} [data-action="accept"]').click()
        expect(alice_page.locator(f'#item-{item.pk}[data-status="accepted"]')).to_be_visible()
        bob_page.locator(f'#item-{item.pk} [data-action="reject"]').click()

        flash = bob_page.locator("#flash")
        expect(flash).to_contain_text(f"Review item #{item.pk} was already accepted by alice.")
        expect(bob_page.locator(f"#item-{item.pk}")).not_to_have_attribute(
            "data-status", "rejected"
        )
    finally:
        for user_page in pages:
            user_page.context.close()

    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decided_by == agent


def test_sla_expiry_holds_order(live_server, page: Page, agent: User, policies, channel, catalog):
    order = order_with_lines(channel, 1, number="#sla")
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.READY, hold_reasons=[])
    item = substitution_item(order, on_sla_breach="hold_order")
    now = timezone.now()
    ReviewItem.objects.filter(pk=item.pk).update(due_at=now - timedelta(minutes=3))

    with time_machine.travel(now, tick=False):
        breached = review_items_sla_sweep(now=now)

    assert breached == [item.pk]
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["review_sla_passed"]

    log_in(page, live_server.url, agent)
    expect(page.locator('.queue-card[data-kind="substitution"] [data-breached]')).to_have_text(
        "1 past the deadline"
    )
    page.goto(f"{live_server.url}{reverse('reviews:item', args=[item.pk])}")
    expect(page.locator(".item-state time.countdown")).to_have_text("overdue 3 min")
    expect(page.locator(".item-state time.countdown")).to_have_class("countdown overdue")
    expect(page.locator(".item-state")).to_contain_text("the order was held")
    expect(page.locator(".events")).to_contain_text("passed its deadline")


def test_stale_csrf_on_claim_shows_fragment(
    live_server, page: Page, agent: User, unmapped_items: list[ReviewItem]
):
    item = unmapped_items[0]
    log_in(page, live_server.url, agent)
    page.goto(f"{live_server.url}{reverse('reviews:item', args=[item.pk])}")
    page.evaluate("""() => document.body.setAttribute("hx-headers", '{"X-CSRFToken": "stale"}')""")

    page.locator(f"#claim-{item.pk}").get_by_role("button", name="Claim").click()

    flash = page.locator('#flash [data-code="csrf_failed"]')
    expect(flash).to_contain_text(CSRF_EXPIRED_MESSAGE)
    expect(page.locator(f"#claim-{item.pk}")).to_contain_text("Unassigned")
    item.refresh_from_db()
    assert item.assignee is None


def test_item_page_keys_work_on_load(
    live_server, page: Page, agent: User, policies, channel, catalog
):
    item = substitution_item(order_with_lines(channel, 1))
    log_in(page, live_server.url, agent)
    page.goto(f"{live_server.url}{reverse('reviews:item', args=[item.pk])}")

    expect(page.locator(f"#item-{item.pk}")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("r")

    expect(page.locator(f'#item-{item.pk}[data-status="rejected"]')).to_be_visible()
    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED


def test_long_channel_values_keep_page_width(
    live_server, page: Page, agent: User, policies, channel, catalog
):
    long_sku = "SKU-" + "7" * 300
    item = substitution_item(
        order_with_lines(channel, 1),
        reason="Delivery error: quantity " + "9" * 4200 + " is not a number.",
        proposal={
            "before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
            "after": {"line": 1, "sku": long_sku},
            "confidence": "0.90",
        },
    )
    log_in(page, live_server.url, agent)
    page.set_viewport_size({"width": 1280, "height": 800})

    for url in (reverse("reviews:queue"), reverse("reviews:item", args=[item.pk])):
        page.goto(f"{live_server.url}{url}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, (url, width)
