"""The main pages in a real Chromium under the Content-Security-Policy.

Each test fails on any console message or `securitypolicyviolation` event about the policy, on
any uncaught script error, and on any request to another host. The htmx buttons are pressed
too, so their requests and swaps run under the policy.
"""

import os

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

try:
    from playwright.sync_api import ConsoleMessage, Page, Request, expect
except ImportError:
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "Playwright is not installed, and OMSGUARD_REQUIRE_BROWSER=1 makes the browser "
            "tests mandatory: pip install -e '.[dev]'.",
            pytrace=False,
        )
    pytest.skip("Playwright is not installed (pip install -e '.[dev]').", allow_module_level=True)

from catalog.models import Channel, Sku
from guardrails.defaults import default_policies_load
from guardrails.models import Canary
from monitoring.models import Alert
from orders.models import Order
from reviews.confirmations import address_confirmation_token
from reviews.models import AddressConfirmation, ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, ensure_role_groups, order_payload, signed_headers
from tests.guardrails.canary_fixtures import canary_of, model_versions
from tests.monitoring.test_alert_pages import raise_alert
from tests.reviews.test_address_confirmation import FIXABLE_ADDRESS
from tests.reviews.test_queue_pages import order_with_lines, substitution_item
from tests.reviews.test_queue_views import hold_orders

# The live server reads committed data from another thread.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "root-pass-123"
# Runs in every document before its own scripts. Playwright injects it outside the page's
# policy, and reports each violation through the function the watch exposes.
VIOLATION_LISTENER = """
window.policyViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  const text = `${event.violatedDirective} blocked ${event.blockedURI || "inline code"} ` +
    `in ${event.sourceFile || event.documentURI}:${event.lineNumber}`;
  window.policyViolations.push(text);
  window.reportPolicyViolation(text);
});
"""


class PolicyWatch:
    """Collect the browser's reports about the policy, script errors and foreign requests."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.base_url = base_url
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("request", self._request)
        page.expose_function("reportPolicyViolation", self._violation)
        page.add_init_script(VIOLATION_LISTENER)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"console {message.type}: {message.text}")

    def _violation(self, text: str) -> None:
        self.problems.append(f"securitypolicyviolation: {text}")

    def _request(self, request: Request) -> None:
        if not request.url.startswith((self.base_url, "data:")):
            self.problems.append(f"request to another host: {request.url}")

    def assert_clean(self, where: str) -> None:
        problems, self.problems = self.problems, []
        assert problems == [], f"on {where}"


@pytest.fixture
def watch(page: Page, live_server) -> PolicyWatch:
    return PolicyWatch(page, live_server.url)


@pytest.fixture
def root(transactional_db) -> User:
    """A superuser, who may open every page, including the admin."""
    ensure_role_groups()
    default_policies_load()
    return User.objects.create_superuser("root", password=PASSWORD)


def open_page(page: Page, watch: PolicyWatch, url: str) -> None:
    """Load the page, let its htmx requests settle, and check what the browser reported."""
    response = page.goto(url)

    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_load_state("networkidle")
    watch.assert_clean(url)


def log_in(page: Page, watch: PolicyWatch, base_url: str) -> None:
    open_page(page, watch, f"{base_url}{reverse('login')}")
    page.get_by_label("User name").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}{reverse('reviews:queue')}")
    page.wait_for_load_state("networkidle")
    watch.assert_clean("the review queue after logging in")


def test_watch_reports_inline_style(page: Page, watch: PolicyWatch, live_server):
    # A check of the watch itself: an inline style element must be reported.
    page.goto(f"{live_server.url}{reverse('login')}")

    page.evaluate(
        "document.head.insertAdjacentHTML('beforeend', '<style>p { color: red; }</style>')"
    )

    page.wait_for_function("() => window.policyViolations.length > 0")
    page.evaluate("() => 0")  # The report reached Python before this round trip returns.

    assert any("style-src" in problem for problem in watch.problems), watch.problems


def test_queue_item_and_order_pages(
    page: Page, watch: PolicyWatch, live_server, root, channel: Channel, catalog, post_webhook
):
    hold_orders(post_webhook, 2)
    substitution = substitution_item(order_with_lines(channel, 1, number="#sub"))
    unmapped = ReviewItem.objects.filter(kind=ReviewKind.UNMAPPED_SKU).order_by("pk").first()

    log_in(page, watch, live_server.url)
    page.locator(f"#item-{unmapped.pk} [data-action=accept]").click()
    expect(page.locator(f'#item-{unmapped.pk}[data-status="accepted"]')).to_be_visible()
    page.locator(f"#item-{substitution.pk} [data-action=reject]").click()
    expect(page.locator(f'#item-{substitution.pk}[data-status="rejected"]')).to_be_visible()
    watch.assert_clean("the review queue after accepting and rejecting")
    open_page(page, watch, f"{live_server.url}{reverse('reviews:item', args=[unmapped.pk])}")
    open_page(page, watch, f"{live_server.url}{reverse('orders:detail', args=[unmapped.order_id])}")
    open_page(
        page, watch, f"{live_server.url}{reverse('orders:history', args=[unmapped.order_id])}"
    )

    assert ReviewItem.objects.get(pk=unmapped.pk).status == ReviewStatus.ACCEPTED
    assert ReviewItem.objects.get(pk=substitution.pk).status == ReviewStatus.REJECTED


def test_customer_confirmation_page(
    page: Page, watch: PolicyWatch, live_server, settings, channel, catalog, post_webhook
):
    ensure_role_groups()
    default_policies_load()
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.85"
    body = as_body(order_payload(shipping_address=FIXABLE_ADDRESS))
    post_webhook(body, headers=signed_headers(body, webhook_id="wh-address"))
    confirmation = AddressConfirmation.objects.get()
    token = address_confirmation_token(confirmation)

    open_page(page, watch, f"{live_server.url}{reverse('confirm:address', args=[token])}")
    page.get_by_role("button", name="Confirm this address").click()

    expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
    # The stylesheet applies: the confirm page's own card style, not the browser default.
    assert page.locator(".card").first.evaluate("el => getComputedStyle(el).borderRadius") == "12px"
    watch.assert_clean("the confirmation page after confirming")
    assert Order.objects.get().shipping_address == confirmation.proposed_address


def test_monitoring_and_rollout_pages(page: Page, watch: PolicyWatch, live_server, root):
    alert = raise_alert("all")
    _control, candidate = model_versions(root)
    canary = canary_of(root, candidate)
    base = live_server.url

    log_in(page, watch, base)
    for url in (
        reverse("dashboard:index"),
        reverse("alerts:list"),
        reverse("rollouts:list"),
        reverse("rollouts:canary", args=[canary.pk]),
        reverse("feedback:weekly"),
        reverse("guardrails:calibration") + "?action=substitute_sku",
    ):
        open_page(page, watch, f"{base}{url}")
    expect(page.locator("svg.chart.reliability")).to_be_visible()

    open_page(page, watch, f"{base}{reverse('alerts:detail', args=[alert.pk])}")
    page.locator("[data-action=acknowledge]").click()
    expect(page.locator("#alert-main")).to_contain_text("Acknowledged by root")
    open_page(page, watch, f"{base}{reverse('rollouts:canary', args=[canary.pk])}")
    page.get_by_label("Reason").fill("Checking the pages under the policy")
    page.locator("[data-action=pause]").click()
    expect(page.locator("[data-status=paused]")).to_be_visible()
    open_page(page, watch, f"{base}{reverse('guardrails:coverage')}")
    page.get_by_label("Only pairs without a policy of their own").check()
    page.wait_for_url(f"{base}{reverse('guardrails:coverage')}?missing=1")
    watch.assert_clean("the alert, canary and coverage pages after their actions")

    assert Alert.objects.get(pk=alert.pk).acknowledged_by == root
    assert Canary.objects.get(pk=canary.pk).status == "paused"


def test_admin_and_api_docs(page: Page, watch: PolicyWatch, live_server, root, catalog):
    sku = Sku.objects.order_by("pk").first()
    base = live_server.url

    log_in(page, watch, base)
    open_page(page, watch, f"{base}{reverse('admin:index')}")
    open_page(page, watch, f"{base}{reverse('admin:catalog_sku_changelist')}")
    open_page(page, watch, f"{base}{reverse('admin:catalog_sku_change', args=[sku.pk])}")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    open_page(page, watch, f"{base}{reverse('admin:axes_accessattempt_changelist')}")
    open_page(page, watch, f"{base}{reverse('api-docs')}")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    page.locator(".swagger-ui .opblock-summary").first.click()
    expect(page.locator(".swagger-ui .opblock-body").first).to_be_visible()
    watch.assert_clean("the admin and the API docs after using them")
