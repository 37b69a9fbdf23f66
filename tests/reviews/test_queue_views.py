"""The review queue page and its HTMX accept/reject endpoints."""

import threading

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.conftest import as_body, make_user, order_payload
from tests.orders.test_pipeline import UNMAPPED_LINE

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
OTHER_UNMAPPED_LINE = UNMAPPED_LINE | {
    "sku": "OLD-MUG-NAVY",
    "title": "Enamel Mug",
    "name": "Enamel Mug - Navy",
}


def hold_orders(post_webhook, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        body = as_body(order_payload(order_id=9_000_000_000_000 + number, lines=[UNMAPPED_LINE]))
        post_webhook(body, headers=_headers(body, f"wh-{number}"))


def _headers(body: bytes, webhook_id: str) -> dict:
    from tests.conftest import signed_headers

    return signed_headers(body, webhook_id=webhook_id)


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def test_queue_requires_login(client):
    response = client.get(reverse("reviews:queue"))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_queue_forbidden_without_role(client, outsider):
    client.force_login(outsider)

    response = client.get(reverse("reviews:queue"))

    assert response.status_code == 403
    assert b"no access to the review queue" in response.content


def test_queue_lists_open_items_with_source_and_reason(
    agent_client, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 2)

    response = agent_client.get(reverse("reviews:queue"))

    assert response.status_code == 200
    html = response.content.decode()
    assert '<span id="open-count">2</span>' in html
    assert "Line 1 (TSHIRT-CLASSIC-BLACK-MED) has no mapping" in html
    assert "Classic Cotton Tee - Black / M" in html
    assert "TEE-CLASSIC-BLK-M" in html
    assert html.count(">Reject</button>") == 2


def test_queue_query_count_does_not_grow_with_items(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 2)
    with CaptureQueriesContext(connection) as few:
        agent_client.get(reverse("reviews:queue"))

    hold_orders(post_webhook, 15, start=100)
    with CaptureQueriesContext(connection) as many:
        response = agent_client.get(reverse("reviews:queue"))

    assert '<span id="open-count">17</span>' in response.content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)


def test_queue_ignores_bad_parameters(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)

    for query in ("?page=abc", "?page=99999", "?kind=nonsense", "?page=-1&kind="):
        response = agent_client.get(reverse("reviews:queue") + query)
        assert response.status_code == 200, query


def test_htmx_accept_returns_decided_fragment_and_new_count(
    agent_client, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 1)
    other = as_body(order_payload(order_id=9_100_000_000_000, lines=[OTHER_UNMAPPED_LINE]))
    post_webhook(other, headers=_headers(other, "wh-other"))
    item = ReviewItem.objects.order_by("pk").first()

    response = agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="item-{item.pk}"' in html
    assert 'data-status="accepted"' in html
    assert "Order status: Ready for fulfilment." in html
    assert '<span id="open-count" hx-swap-oob="true">1</span>' in html
    assert "<html" not in html
    assert Order.objects.get(pk=item.order_id).status == OrderStatus.READY


def test_accept_settles_other_items_with_same_channel_sku(
    agent_client, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 3)
    first, *others = ReviewItem.objects.order_by("pk")

    response = agent_client.post(reverse("reviews:accept", args=[first.pk]), headers=HTMX)

    html = response.content.decode()
    assert "The same mapping settled 2 more items." in html
    for other in others:
        assert f'id="item-{other.pk}" data-item="{other.pk}" data-status="resolved"' in html
        other.refresh_from_db()
        assert other.status == ReviewStatus.RESOLVED
        assert other.decided_by is None
        assert other.decision_note == f"mapping created in review item #{first.pk}"
    assert '<span id="open-count" hx-swap-oob="true">0</span>' in html
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.READY}


def test_htmx_reject_keeps_hold(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    response = agent_client.post(reverse("reviews:reject", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert 'data-status="rejected"' in response.content.decode()
    assert Order.objects.get().status == OrderStatus.ON_HOLD


def test_htmx_accept_without_permission_is_403_fragment(client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    client.force_login(make_user("viewer", "integration"))

    response = client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-code="forbidden"' in html
    assert "You do not have permission to decide review items." in html
    assert "<html" not in html
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_second_decision_is_409_fragment(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    response = agent_client.post(reverse("reviews:reject", args=[item.pk]), headers=HTMX)

    assert response.status_code == 409
    assert f"Review item #{item.pk} was already accepted by alice." in response.content.decode()


def test_unknown_item_is_404_fragment(agent_client):
    response = agent_client.post(reverse("reviews:accept", args=[987654]), headers=HTMX)

    assert response.status_code == 404
    assert "Review item #987654 does not exist." in response.content.decode()


def test_invalid_sku_id_is_400_fragment(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    response = agent_client.post(
        reverse("reviews:accept", args=[item.pk]), data={"sku_id": "abc"}, headers=HTMX
    )

    assert response.status_code == 400
    assert "Invalid SKU id &#x27;abc&#x27;." in response.content.decode()


def test_stale_csrf_token_gets_small_403_fragment(agent, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    client.get(reverse("reviews:queue"))

    response = client.post(
        reverse("reviews:accept", args=[item.pk]),
        headers=HTMX | {"X-CSRFToken": "stale-token-from-an-old-page"},
    )

    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-code="csrf_failed"' in html
    assert "security token has expired" in html
    assert "<html" not in html
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_csrf_failure_without_htmx_is_full_page(agent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)

    response = client.post(reverse("reviews:accept", args=[1]))

    assert response.status_code == 403
    assert b"<html" in response.content
    assert b"Form expired" in response.content


def test_htmx_request_after_logout_redirects_to_login(client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    response = client.post(
        reverse("reviews:accept", args=[item.pk]),
        headers=HTMX | {"HX-Current-URL": "http://testserver/queue/"},
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=/queue/"
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_get_on_decision_url_is_405(agent_client):
    response = agent_client.get(reverse("reviews:accept", args=[1]))

    assert response.status_code == 405


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_agents_deciding_at_once_make_one_decision(channel, catalog, post_webhook):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL row locks")
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    users = [make_user("agent-one", "cs_agent"), make_user("agent-two", "cs_agent")]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def decide(user, action) -> None:
        try:
            client = Client()
            client.force_login(user)
            barrier.wait(timeout=10)
            response = client.post(reverse(f"reviews:{action}", args=[item.pk]), headers=HTMX)
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(users[0], "accept")),
        threading.Thread(target=decide, args=(users[1], "reject")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(statuses) == [200, 409]
    item.refresh_from_db()
    assert item.status in (ReviewStatus.ACCEPTED, ReviewStatus.REJECTED)
    assert (
        item.order.events.filter(kind__startswith="review.").exclude(kind="review.opened").count()
        == 1
    )


def test_queue_explains_accept_and_shows_raw_json(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)

    html = agent_client.get(reverse("reviews:queue")).content.decode()

    assert "maps channel SKU <code>TSHIRT-CLASSIC-BLACK-MED</code> to it" in html
    assert "&quot;sku&quot;: &quot;TSHIRT-CLASSIC-BLACK-MED&quot;" in html
    assert "None" not in html.split("Raw line as received")[1].split("</pre>")[0]


def test_reject_saves_the_reason(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    agent_client.post(
        reverse("reviews:reject", args=[item.pk]), data={"note": "discontinued"}, headers=HTMX
    )

    item.refresh_from_db()
    assert item.decision_note == "discontinued"


def test_candidate_with_differing_colour_is_not_the_one_click_accept(
    agent_client, channel, catalog, post_webhook
):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    first = item.proposal["candidates"][0]
    item.proposal = {"candidates": [first | {"conflicting_attributes": {"colour": "navy"}}]}
    item.save()

    html = agent_client.get(reverse("reviews:queue")).content.decode()

    assert "Differs from the line: colour navy" in html
    assert ">Accept</button>" not in html
    assert ">Use this SKU</button>" in html
