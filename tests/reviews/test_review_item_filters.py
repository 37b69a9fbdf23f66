"""Id filters of the review API: a value that is not an id gets a 400 naming the kind of id,
and an unknown id matches nothing."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from omsguard.api_filters import MAX_ID
from reviews.models import ReviewItem
from tests.conftest import make_user
from tests.reviews.test_queue_views import hold_orders


@pytest.fixture
def api(db) -> APIClient:
    client = APIClient()
    user = make_user("api-agent", "cs_manager")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _fields(response) -> dict:
    return response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", "'abc'"),
        ("1.5", "'1.5'"),
        ("0", "'0'"),
        ("-3", "'-3'"),
        (str(10**30), "'1000000000000000000000000000000'"),
        ("9" * 50, "'" + "9" * 40 + "'..."),
    ],
)
def test_order_filter_rejects_non_id(api, value, shown):
    response = api.get("/api/v1/review-items/", {"order": value})

    assert response.status_code == 400
    assert _fields(response) == {
        "order": [f"Enter an order id, a whole number from 1 to {MAX_ID}; got {shown}."]
    }


def test_order_filter_keeps_that_order(api, channel, catalog, post_webhook):
    hold_orders(post_webhook, 2)
    first, second = ReviewItem.objects.order_by("order_id").values_list("order_id", flat=True)

    response = api.get("/api/v1/review-items/", {"order": first})

    assert response.status_code == 200
    assert [item["order"] for item in response.json()["results"]] == [first]
    assert second != first


def test_order_filter_unknown_order_is_empty(api, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    unknown = ReviewItem.objects.get().order_id + 1000

    response = api.get("/api/v1/review-items/", {"order": unknown})

    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("parameter", "noun"), [("decision", "a decision"), ("review_item", "a review item")]
)
def test_label_id_filters_name_the_id(api, parameter, noun):
    response = api.get("/api/v1/error-labels/", {parameter: "abc"})

    assert response.status_code == 400
    assert _fields(response) == {
        parameter: [f"Enter {noun} id, a whole number from 1 to {MAX_ID}; got 'abc'."]
    }
