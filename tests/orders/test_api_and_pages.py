"""The orders and review-items REST API with token auth, and the order page."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.models import ChannelApiGrant, Order
from reviews.models import ReviewItem, ReviewStatus
from tests.conftest import as_body, make_user, order_payload, signed_headers
from tests.orders.test_pipeline import UNMAPPED_LINE

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def granted(user, channel):
    """Grant an integration user the channel, so it may read the channel's orders."""
    ChannelApiGrant.objects.create(user=user, channel=channel)
    return user


def ingest(post_webhook, count: int, lines: list[dict] | None = None) -> None:
    for number in range(count):
        body = as_body(order_payload(order_id=7_000_000_000_000 + number, lines=lines))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-api-{number}"))


def test_orders_api_needs_authentication(channel):
    response = APIClient().get("/api/v1/orders/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_integration_token_lists_orders_with_lines(channel, catalog, post_webhook):
    ingest(post_webhook, 2)
    client = token_client(granted(make_user("robot", "integration"), channel))

    response = client.get("/api/v1/orders/?status=ready")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first = body["results"][0]
    assert first["channel"] == "shop"
    assert first["total"] == "44.98"
    assert first["lines"][0]["sku"] == "TEE-CLASSIC-BLK-M"
    # The name for people, and the code the decisions API takes in before/after.
    assert first["carrier_service"] == "UPS Ground"
    assert first["carrier_service_code"] == "ups/ground"


def test_orders_api_query_count_is_flat(channel, catalog, post_webhook):
    client = token_client(granted(make_user("robot", "integration"), channel))
    ingest(post_webhook, 2)
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/orders/")

    for number in range(2, 12):
        body = as_body(order_payload(order_id=7_100_000_000_000 + number))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-more-{number}"))
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/orders/")

    assert response.json()["count"] == 12
    assert len(many.captured_queries) == len(few.captured_queries)


def test_orders_api_rejects_bad_filter_with_field(channel):
    client = token_client(make_user("robot", "integration"))

    response = client.get("/api/v1/orders/?status=lost&created_after=yesterday")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"status", "created_after"}


def test_user_without_view_permission_gets_403(channel):
    response = token_client(make_user("nobody", None)).get("/api/v1/orders/")

    assert response.status_code == 403


def test_agent_accepts_item_through_api(channel, catalog, post_webhook):
    ingest(post_webhook, 1, lines=[UNMAPPED_LINE])
    item = ReviewItem.objects.get()
    client = token_client(make_user("api-agent", "cs_agent"))

    response = client.post(f"/api/v1/review-items/{item.pk}/accept/", {"note": "ok"}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert response.json()["decided_by"] == "api-agent"


def test_integration_cannot_decide_through_api(channel, catalog, post_webhook):
    ingest(post_webhook, 1, lines=[UNMAPPED_LINE])
    item = ReviewItem.objects.get()
    client = token_client(make_user("robot", "integration"))

    response = client.post(f"/api/v1/review-items/{item.pk}/reject/", {}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_api_accept_validates_sku_id(channel, catalog, post_webhook):
    ingest(post_webhook, 1, lines=[UNMAPPED_LINE])
    item = ReviewItem.objects.get()
    client = token_client(make_user("api-agent", "cs_agent"))

    response = client.post(
        f"/api/v1/review-items/{item.pk}/accept/", {"sku_id": "x"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"sku_id": ["A valid integer is required."]}


def test_api_decision_on_decided_item_is_409(channel, catalog, post_webhook):
    ingest(post_webhook, 1, lines=[UNMAPPED_LINE])
    item = ReviewItem.objects.get()
    client = token_client(make_user("api-agent", "cs_agent"))
    client.post(f"/api/v1/review-items/{item.pk}/reject/", {}, format="json")

    response = client.post(f"/api/v1/review-items/{item.pk}/accept/", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_decided"


def test_order_page_shows_provenance_and_timeline(client, agent, channel, catalog, post_webhook):
    ingest(post_webhook, 1, lines=[UNMAPPED_LINE])
    order = Order.objects.get()
    client.force_login(agent)

    response = client.get(reverse("orders:detail", args=[order.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "7000000000000" in html
    assert "wh-api-0" in html
    assert "order.held" in html
    assert "Line 1 (TSHIRT-CLASSIC-BLACK-MED) has no SKU mapping" in html


def test_order_page_needs_permission(client, outsider, channel, catalog, post_webhook):
    ingest(post_webhook, 1)
    client.force_login(outsider)

    response = client.get(reverse("orders:detail", args=[Order.objects.get().pk]))

    assert response.status_code == 403


def test_unknown_order_page_is_404(client, agent):
    client.force_login(agent)

    assert client.get(reverse("orders:detail", args=[424242])).status_code == 404


def test_non_numeric_ids_are_404_json(channel):
    client = token_client(make_user("api-agent", "cs_agent"))

    for path in ("/api/v1/review-items/abc/accept/", "/api/v1/orders/abc/", "/api/v1/skus/"):
        response = client.post(path, {}, format="json") if "accept" in path else client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found", path


def test_missing_order_is_not_found_code(channel):
    client = token_client(make_user("robot", "integration"))

    response = client.get("/api/v1/orders/999999/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
