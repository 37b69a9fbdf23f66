"""The canary page in a real Chromium: a refused action shows its message and keeps the page."""

import os

import pytest
from django.urls import reverse

try:
    from playwright.sync_api import Page, expect
except ImportError:
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            "Playwright is not installed, and OMSGUARD_REQUIRE_BROWSER=1 makes the browser "
            "tests mandatory: pip install -e '.[dev]'.",
            pytrace=False,
        )
    pytest.skip("Playwright is not installed (pip install -e '.[dev]').", allow_module_level=True)

from guardrails.models import Canary
from tests.conftest import make_user
from tests.guardrails.canary_fixtures import canary_of, model_versions

pytestmark = pytest.mark.django_db(transaction=True)


def test_refused_share_keeps_the_canary_page(page: Page, live_server):
    ops = make_user("olivia", "ops_manager")
    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    _control, candidate = model_versions(ops)
    canary = canary_of(ops, candidate)
    page.goto(f"{live_server.url}{reverse('login')}")
    page.get_by_label("User name").fill("olivia")
    page.get_by_label("Password").fill("pw-olivia")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()

    page.goto(f"{live_server.url}{reverse('rollouts:canary', args=[canary.pk])}")
    # Skip the browser's own range check, so the server's answer is what the page shows.
    page.evaluate("document.querySelectorAll('form').forEach(form => form.noValidate = true)")
    share_form = page.locator(f"form[action='{reverse('rollouts:share', args=[canary.pk])}']")
    share_form.locator("input[name=share]").fill("0.2")
    share_form.get_by_role("button", name="Change the share").click()

    expect(page.locator("#flash")).to_contain_text("0.01")
    expect(page.locator("header.topbar")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text(canary.name)
    assert Canary.objects.get(pk=canary.pk).share == canary.share
