"""An ops manager watches audit sampling adapt: after many reviews with little disagreement,
"Recompute now" in the admin lowers the rate. The floor is covered by the unit tests."""

from decimal import Decimal

import pytest
from django.urls import reverse

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the browser fixture skips or fails the tests with the reason
    Page = expect = None

from guardrails.defaults import default_policies_load
from guardrails.models import ActionType, GuardrailSettings, SamplingState
from orders.models import Order
from tests.browser.test_queue_pages import log_in
from tests.conftest import as_body, ensure_role_groups, order_payload
from tests.guardrails.conftest import make_staff_user
from tests.guardrails.test_sampling import reviewed_decisions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reviewed_history(transactional_db, channel, catalog, post_webhook) -> None:
    """Start 10 %, floor 1 %, target 2 %; 100 reviewed substitutions with 1 disagreement."""
    ensure_role_groups()
    default_policies_load()
    GuardrailSettings.objects.filter(pk=1).update(
        audit_sample_start_rate=Decimal("0.10"),
        audit_sample_floor_rate=Decimal("0.01"),
        audit_sample_target_disagreement=Decimal("0.02"),
        audit_sample_min_reviews=50,
    )
    post_webhook(as_body(order_payload()))
    reviewed_decisions(Order.objects.get(), agreed=99, disagreed=1)
    SamplingState.objects.update_or_create(
        action=ActionType.objects.get(code="substitute_sku"), defaults={"rate": Decimal("0.10")}
    )


def test_recompute_lowers_rate_with_disagreement(live_server, page: Page, reviewed_history):
    ops = make_staff_user("olivia", "ops_manager")
    log_in(page, live_server.url, ops)

    page.goto(f"{live_server.url}{reverse('admin:guardrails_samplingstate_changelist')}")
    row = page.locator("#result_list tbody tr", has_text="Substitute SKU")
    expect(row).to_contain_text("0.1000")
    row.locator("input[name=_selected_action]").check()
    page.locator("select[name=action]").select_option("recompute_now")
    page.get_by_role("button", name="Go").click()

    expect(page.locator(".messagelist")).to_contain_text("Recomputed 1 sampling rate")
    # 1 % disagreement is half the 2 % target, so the rate halves from 10 % to 5 %.
    expect(row).to_contain_text("0.0500")
    expect(row).to_contain_text("0.0100")
    state = SamplingState.objects.get(action__code="substitute_sku")
    assert state.rate == Decimal("0.05")
    assert state.reviewed == 100
