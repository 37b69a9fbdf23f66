"""The queue pages: landing cards, per-kind lists with filters, the item page, revise and claim."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Sku
from orders.models import Delivery, Order, OrderEvent, OrderLine, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, make_user, order_payload
from tests.orders.test_addresses_review import WRONG_ZIP_ADDRESS
from tests.reviews.test_queue_views import hold_orders

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


@pytest.fixture
def manager_client(db) -> Client:
    client = Client()
    client.force_login(make_user("morgan", "cs_manager"))
    return client


def order_with_lines(channel, count: int, *, number: str = "#5001") -> Order:
    """An on-hold order with `count` mapped lines, made directly so the size is exact."""
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-{number}",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    order = Order.objects.create(
        channel=channel,
        delivery=delivery,
        channel_order_id=f"co-{number}",
        order_number=number,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal("10") * count,
        shipping_total=Decimal("0"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("10") * count,
        shipping_address=dict(WRONG_ZIP_ADDRESS),
    )
    skus = list(Sku.objects.order_by("pk"))
    for position in range(1, count + 1):
        OrderLine.objects.create(
            order=order,
            position=position,
            title=f"Line {position}",
            quantity=1,
            unit_price=Decimal("10"),
            sku=skus[position % len(skus)],
            raw={"sku": skus[position % len(skus)].code},
        )
    return order


def substitution_item(order: Order, **fields) -> ReviewItem:
    """An open substitution item on line 1 as the guardrail engine would open it."""
    defaults = {
        "kind": ReviewKind.SUBSTITUTION,
        "order": order,
        "order_line": order.lines.get(position=1),
        "reason": "Substitute SKU proposed by gpt-sub: confidence 0.90 is not above 0.92.",
        "source_data": {"before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"}},
        "proposal": {
            "before": {"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
            "after": {"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
            "confidence": "0.90",
            "model": {"name": "gpt-sub", "version": "2024-06"},
        },
        "confidence": Decimal("0.90"),
        "action_code": "substitute_sku",
    }
    return ReviewItem.objects.create(**(defaults | fields))


def address_item(post_webhook) -> ReviewItem:
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    item = ReviewItem.objects.get(kind=ReviewKind.ADDRESS)
    assert item.approver_group == "cs_manager"
    return item


# --- Landing page -------------------------------------------------------------------------


def test_landing_shows_card_per_kind(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 2)
    ReviewItem.objects.filter(pk=ReviewItem.objects.order_by("pk").first().pk).update(
        due_at=timezone.now() - timedelta(minutes=5)
    )

    html = agent_client.get(reverse("reviews:queue")).content.decode()

    for kind, label in ReviewKind.choices:
        assert f'data-kind="{kind}"' in html, kind
        assert f"<h3>{label}" in html, kind
    assert '<span class="kind-count" id="kind-count-unmapped_sku">2</span>' in html
    assert '<span class="kind-count" id="kind-count-address">0</span>' in html
    assert 'data-breached="1">1 past the deadline' in html
    assert 'Unprocessable delivery <span class="muted">(dead-letter)</span>' in html


def test_landing_lists_my_claims(agent, agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 2)
    first, second = ReviewItem.objects.order_by("pk")
    agent_client.post(reverse("reviews:claim", args=[second.pk]), headers=HTMX)

    html = agent_client.get(reverse("reviews:queue")).content.decode()
    claims = html.split('id="claims-heading"')[1].split("</section>")[0]

    assert f'href="/queue/items/{second.pk}/"' in claims
    assert f'href="/queue/items/{first.pk}/"' not in claims


def test_landing_shows_disagreement_rates(agent_client, monkeypatch):
    from guardrails.disagreement import DisagreementRow

    rows = [
        DisagreementRow(
            action_code="substitute_sku",
            model_name="gpt-sub",
            model_version="2024-06",
            reviewed=40,
            disagreed=2,
            rate=Decimal("0.05"),
        )
    ]
    monkeypatch.setattr("reviews.views.disagreement_rates", lambda **kwargs: rows)

    html = agent_client.get(reverse("reviews:queue")).content.decode()

    assert "<code>substitute_sku</code>" in html
    assert "<code>gpt-sub</code> 2024-06" in html
    assert '<td class="rate-high">5.0 %</td>' in html


# --- List pages and filters ------------------------------------------------------------------


def test_kind_list_shows_only_that_kind(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    substitution = substitution_item(order_with_lines(channel, 1))

    html = agent_client.get(reverse("reviews:queue_kind", args=["substitution"])).content.decode()

    assert f'id="item-{substitution.pk}"' in html
    assert html.count('class="card item"') == 1
    assert '<a href="/queue/substitution/" aria-current="page">' in html


def test_unknown_kind_is_404(agent_client):
    response = agent_client.get(reverse("reviews:queue_kind", args=["nonsense"]))

    assert response.status_code == 404
    assert b"There is no review queue &#x27;nonsense&#x27;." in response.content


@pytest.mark.parametrize(
    "query",
    [
        "confidence_min=abc",
        "confidence_max=7",
        "older_than=-5",
        "sort=sideways",
        "kind=nonsense",
        "page=abc",
        "page=-1",
        "assignee=" + "x" * 500,
        "confidence_min=NaN",
    ],
)
def test_bad_filter_is_shown_not_500(agent_client, channel, catalog, post_webhook, query):
    hold_orders(post_webhook, 1)

    response = agent_client.get(reverse("reviews:queue_kind", args=["all"]) + "?" + query)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="card item"') == 1
    if not query.startswith("page="):
        assert 'data-code="invalid_filter"' in html


def test_filters_by_confidence_and_channel(agent_client, channel, catalog):
    low = substitution_item(order_with_lines(channel, 1, number="#1"), confidence=Decimal("0.4"))
    high = substitution_item(order_with_lines(channel, 1, number="#2"), confidence=Decimal("0.9"))
    url = reverse("reviews:queue_kind", args=["all"])

    ranged = agent_client.get(url, {"confidence_min": "0.5", "confidence_max": "1"}).content
    other_channel = agent_client.get(url, {"channel": "elsewhere"}).content

    assert f'id="item-{high.pk}"'.encode() in ranged
    assert f'id="item-{low.pk}"'.encode() not in ranged
    assert b'class="card item"' not in other_channel


def test_pager_links_keep_filters(agent_client, channel, catalog):
    for number in range(27):
        substitution_item(order_with_lines(channel, 1, number=f"#{number}"))

    html = agent_client.get(
        reverse("reviews:queue_kind", args=["substitution"]), {"sort": "newest"}
    ).content.decode()

    assert "Page 1 of 2" in html
    assert 'href="?sort=newest&amp;page=2"' in html


def test_row_shows_confidence_countdown_and_claim(agent_client, channel, catalog):
    with time_machine.travel("2026-03-08 09:00:00Z", tick=False):
        item = substitution_item(
            order_with_lines(channel, 1), due_at=timezone.now() + timedelta(minutes=12)
        )
        html = agent_client.get(reverse("reviews:queue_kind", args=["all"])).content.decode()

    assert "confidence 0.9000" in html
    assert 'datetime="2026-03-08T09:12:00Z"' in html
    assert ">12 min left</time>" in html
    assert f'hx-post="/queue/items/{item.pk}/claim/"' in html


def test_overdue_countdown(agent_client, channel, catalog):
    with time_machine.travel("2026-03-08 09:00:00Z", tick=False):
        substitution_item(order_with_lines(channel, 1), due_at=timezone.now())
    with time_machine.travel("2026-03-08 09:03:00Z", tick=False):
        html = agent_client.get(reverse("reviews:queue_kind", args=["all"])).content.decode()

    assert 'class="countdown overdue"' in html
    assert ">overdue 3 min</time>" in html


# --- Item page -------------------------------------------------------------------------------


def test_item_page_shows_context(agent_client, channel, catalog):
    order = order_with_lines(channel, 2)
    for number in range(7):
        OrderEvent.objects.create(order=order, kind=f"test.{number}", message=f"event {number}")
    item = substitution_item(order)

    response = agent_client.get(reverse("reviews:item", args=[item.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert '<tr class="changed"><td><code>sku</code></td>' in html
    assert "<strong>TEE-CLASSIC-WHT-M</strong>" in html
    assert "Why is this here" in html
    assert "confidence 0.90 is not above 0.92" in html
    events = html.split('id="events-heading"')[1].split("</section>")[0]
    assert events.count("<li>") == 5
    assert "test.6" in events
    assert "test.1" not in events
    lines = html.split('id="lines-heading"')[1].split("</section>")[0]
    assert "Line 1" in lines
    assert "Line 2" in lines
    assert 'data-action="accept"' in html


def test_item_page_unknown_item_is_404(agent_client):
    response = agent_client.get(reverse("reviews:item", args=[987654]))

    assert response.status_code == 404
    assert b"Review item #987654 does not exist." in response.content


def test_item_page_read_only_for_agent(agent_client, channel, catalog, post_webhook):
    item = address_item(post_webhook)

    html = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert 'data-code="read_only"' in html
    assert "only CS manager may" in html
    assert 'data-action="accept"' not in html
    assert 'data-action="reject"' not in html
    assert "Claim</button>" not in html


@pytest.mark.parametrize("action", ["accept", "reject", "revise", "claim"])
def test_agent_forced_post_on_address_is_403(agent_client, channel, catalog, post_webhook, action):
    item = address_item(post_webhook)

    response = agent_client.post(
        reverse(f"reviews:{action}", args=[item.pk]),
        data={"address1": "1 Main St", "city": "Austin", "country_code": "US"},
        headers=HTMX,
    )

    assert response.status_code == 403
    assert "Only the CS manager role may decide address items" in response.content.decode()
    assert "<html" not in response.content.decode()
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN
    assert item.assignee is None


def test_manager_sees_address_buttons(manager_client, channel, catalog, post_webhook):
    item = address_item(post_webhook)

    html = manager_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert 'data-code="read_only"' not in html
    assert 'data-action="accept"' in html
    assert f'id="revise-{item.pk}"' in html


def test_stale_item_disables_approval(agent_client, channel, catalog):
    order = order_with_lines(channel, 1)
    item = substitution_item(order)
    Order.objects.filter(pk=order.pk).update(version=item.order_version + 1)

    html = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()
    response = agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert "approving is disabled" in html
    assert 'data-action="accept"' not in html
    assert 'data-action="reject"' in html
    assert response.status_code == 409
    assert 'data-code="stale_order"' in response.content.decode()


# --- Revise ----------------------------------------------------------------------------------


def test_revise_invalid_form_comes_back_with_errors(manager_client, channel, catalog, post_webhook):
    item = address_item(post_webhook)

    response = manager_client.post(
        reverse("reviews:revise", args=[item.pk]),
        data={"address1": "", "city": "Austin", "country_code": "U1"},
        headers=HTMX,
    )

    html = response.content.decode()
    assert response.status_code == 400
    assert response["HX-Retarget"] == f"#revise-{item.pk}"
    assert response["HX-Reswap"] == "outerHTML"
    assert f'<form class="revise-form" id="revise-{item.pk}" hx-post' in html
    assert "This field is required." in html
    assert "Enter a two-letter country code" in html
    assert 'data-code="invalid_revision"' in html
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_revise_address_stores_revision(manager_client, channel, catalog, post_webhook):
    item = address_item(post_webhook)
    corrected = {
        "name": WRONG_ZIP_ADDRESS.get("name", ""),
        "address1": WRONG_ZIP_ADDRESS["address1"],
        "city": WRONG_ZIP_ADDRESS["city"],
        "province_code": WRONG_ZIP_ADDRESS["province_code"],
        "zip": "78701",
        "country_code": "US",
    }

    response = manager_client.post(
        reverse("reviews:revise", args=[item.pk]), data=corrected, headers=HTMX
    )

    assert response.status_code == 200, response.content.decode()
    html = response.content.decode()
    assert 'data-status="accepted"' in html
    assert "revised:" in html
    assert '<span id="kind-count-address" hx-swap-oob="innerHTML">0</span>' in html
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.revision["zip"] == "78701"
    assert item.order.shipping_address["zip"] == "78701"


def test_revise_unmapped_sku_by_code(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    unknown = agent_client.post(
        reverse("reviews:revise", args=[item.pk]), data={"sku": "NOPE"}, headers=HTMX
    )
    accepted = agent_client.post(
        reverse("reviews:revise", args=[item.pk]), data={"sku": "TEE-CLASSIC-WHT-M"}, headers=HTMX
    )

    assert unknown.status_code == 400
    assert "No active SKU has the code &#x27;NOPE&#x27;." in unknown.content.decode()
    assert accepted.status_code == 200
    item.refresh_from_db()
    assert item.revision == {"sku_id": Sku.objects.get(code="TEE-CLASSIC-WHT-M").pk}


def test_revise_not_supported_kind_is_400_flash(agent_client, channel, catalog):
    item = ReviewItem.objects.create(
        kind=ReviewKind.HIGH_VALUE,
        order=order_with_lines(channel, 1),
        reason="Order total is above the escalation limit",
        source_data={"total": "10", "limit": "5", "currency": "USD"},
        proposal={"action": "release"},
    )

    response = agent_client.post(reverse("reviews:revise", args=[item.pk]), headers=HTMX)

    assert response.status_code == 400
    assert 'data-code="not_revisable"' in response.content.decode()


def test_second_revise_is_409(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    response = agent_client.post(
        reverse("reviews:revise", args=[item.pk]), data={"sku": "TEE-CLASSIC-WHT-M"}, headers=HTMX
    )

    assert response.status_code == 409
    assert f"Review item #{item.pk} was already accepted by alice." in response.content.decode()


# --- Claims ----------------------------------------------------------------------------------


def test_claim_and_release(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    other = Client()
    other.force_login(make_user("bob", "cs_agent"))

    claimed = agent_client.post(reverse("reviews:claim", args=[item.pk]), headers=HTMX)
    second_claim = other.post(reverse("reviews:claim", args=[item.pk]), headers=HTMX)
    released = agent_client.post(reverse("reviews:release", args=[item.pk]), headers=HTMX)

    assert claimed.status_code == 200
    assert "Claimed by alice" in claimed.content.decode()
    assert ">Release</button>" in claimed.content.decode()
    assert second_claim.status_code == 409
    assert f"Review item #{item.pk} is claimed by alice" in second_claim.content.decode()
    assert released.status_code == 200
    assert "Unassigned" in released.content.decode()
    item.refresh_from_db()
    assert item.assignee is None


def test_claim_unknown_item_is_404_flash(agent_client):
    response = agent_client.post(reverse("reviews:claim", args=[987654]), headers=HTMX)

    assert response.status_code == 404
    assert "<html" not in response.content.decode()


# --- Query counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("url_name,args", [("reviews:queue", []), ("reviews:queue_kind", ["all"])])
def test_list_queries_constant(
    agent_client, channel, catalog, django_assert_max_num_queries, url_name, args
):
    url = reverse(url_name, args=args)
    for number in range(3):
        substitution_item(order_with_lines(channel, 2, number=f"#{number}"))
    agent_client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        agent_client.get(url)

    for number in range(3, 30):
        substitution_item(order_with_lines(channel, 2, number=f"#{number}"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = agent_client.get(url)
    assert response.content.decode().count('class="card item"') == 25


def test_item_page_queries_constant(agent_client, channel, catalog, django_assert_max_num_queries):
    small = substitution_item(order_with_lines(channel, 1, number="#small"))
    large = substitution_item(order_with_lines(channel, 10, number="#large"))
    for number in range(8):
        OrderEvent.objects.create(order=large.order, kind="test", message=f"event {number}")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    agent_client.get(reverse("reviews:item", args=[small.pk]))
    with CaptureQueriesContext(connection) as few:
        agent_client.get(reverse("reviews:item", args=[small.pk]))

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = agent_client.get(reverse("reviews:item", args=[large.pk]))
    assert "Line 10" in response.content.decode()
