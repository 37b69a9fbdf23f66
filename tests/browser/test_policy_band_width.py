"""The policy version admin page fits a 1,280 px window, and its value-band table scrolls inside
its own box instead of widening the page (static/omsguard/admin-policy-bands.css)."""

import pytest
from django.urls import reverse

try:
    from playwright.sync_api import Page
except ImportError:  # the browser fixture skips or fails the tests with the reason
    Page = None

from guardrails.defaults import default_policies_load
from guardrails.models import PolicyVersion
from tests.browser.test_queue_pages import log_in
from tests.conftest import ensure_role_groups
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORT = {"width": 1280, "height": 900}
NARROW_VIEWPORT = {"width": 800, "height": 768}
BAND_TABLE = "#bands-group .tabular table"

# Widths of the page and of the band table's box and content, in CSS pixels.
MEASURE = """(selector) => {
    const table = document.querySelector(selector);
    const box = table.getBoundingClientRect();
    return {
        viewport: window.innerWidth,
        page: document.documentElement.scrollWidth,
        body: document.body.scrollWidth,
        boxLeft: box.left,
        boxRight: box.right,
        clientWidth: table.clientWidth,
        scrollWidth: table.scrollWidth,
        overflowX: getComputedStyle(table).overflowX,
    };
}"""
SCROLL_TO_END = """(selector) => {
    const table = document.querySelector(selector);
    table.scrollLeft = table.scrollWidth;
    const box = table.getBoundingClientRect();
    const cells = table.querySelectorAll("thead th");
    const last = cells[cells.length - 1].getBoundingClientRect();
    return {
        scrollLeft: table.scrollLeft,
        boxRight: box.right,
        lastRight: last.right,
        windowScrollX: window.scrollX,
    };
}"""


@pytest.fixture
def ops_page(live_server, page: Page) -> Page:
    ensure_role_groups()
    default_policies_load()
    page.set_viewport_size(VIEWPORT)
    log_in(page, live_server.url, make_staff_user("olivia", "ops_manager"))
    return page


def open_admin(page: Page, base_url: str, path: str) -> dict:
    page.goto(f"{base_url}{path}")
    page.wait_for_selector(BAND_TABLE)
    return page.evaluate(MEASURE, BAND_TABLE)


def test_change_page_fits_viewport(live_server, ops_page):
    version = PolicyVersion.objects.filter(bands__isnull=False).first()
    path = reverse("admin:guardrails_policyversion_change", args=[version.pk])

    sizes = open_admin(ops_page, live_server.url, path)

    assert sizes["viewport"] == VIEWPORT["width"]
    assert sizes["page"] <= VIEWPORT["width"], sizes
    assert sizes["body"] <= VIEWPORT["width"], sizes
    assert sizes["boxLeft"] >= 0, sizes
    assert sizes["boxRight"] <= VIEWPORT["width"], sizes
    # If the columns ever outgrow the box, the table scrolls inside it.
    assert sizes["overflowX"] == "auto", sizes


def test_band_table_scrolls_in_box(live_server, ops_page):
    # At 1,280 px the band columns fit beside the admin's navigation sidebar (about 670 px
    # of inputs in a 900 px box), so only a narrower window makes the table wider than its box.
    ops_page.set_viewport_size(NARROW_VIEWPORT)
    version = PolicyVersion.objects.filter(bands__isnull=False).first()
    path = reverse("admin:guardrails_policyversion_change", args=[version.pk])

    sizes = open_admin(ops_page, live_server.url, path)

    assert sizes["page"] <= NARROW_VIEWPORT["width"], sizes
    assert sizes["overflowX"] == "auto", sizes
    assert sizes["scrollWidth"] > sizes["clientWidth"], sizes
    end = ops_page.evaluate(SCROLL_TO_END, BAND_TABLE)
    assert end["scrollLeft"] > 0, end
    # Scrolled to its end, the last column is inside the box and the window did not move.
    assert end["lastRight"] <= end["boxRight"] + 1, end
    assert end["windowScrollX"] == 0, end


def test_add_page_fits_viewport(live_server, ops_page):
    sizes = open_admin(ops_page, live_server.url, reverse("admin:guardrails_policyversion_add"))

    assert sizes["page"] <= VIEWPORT["width"], sizes
    assert sizes["boxRight"] <= VIEWPORT["width"], sizes
