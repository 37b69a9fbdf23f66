"""The label taxonomy and error labels API: reading, filtering, adding, and its 400s and 403s."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from guardrails.models import DecisionOutcome
from reviews.labels import error_label_add
from reviews.models import ErrorLabel, ReviewItem, ReviewKind
from tests.conftest import make_user
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

TERMS_URL = "/api/v1/label-terms/"
LABELS_URL = "/api/v1/error-labels/"


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def item(order) -> ReviewItem:
    return ReviewItem.objects.create(
        kind=ReviewKind.SUBSTITUTION, order=order, reason="Out of stock.", source_data={}
    )


@pytest.fixture
def manager_user(db) -> User:
    return make_user("morgan", "cs_manager")


def body(taxonomy, **overrides) -> dict:
    return {
        "cause": taxonomy["cause"]["stale_stock"].pk,
        "impact": taxonomy["impact"]["customer_delay"].pk,
        "corrective_action": taxonomy["corrective_action"]["fix_channel_data"].pk,
        "note": "Stock count was two days old.",
    } | overrides


# --- Terms ----------------------------------------------------------------------------------


def test_terms_filtered_by_kind(agent, label_taxonomy):
    response = api_for(agent).get(TERMS_URL, {"kind": "impact"})

    assert response.status_code == 200
    results = response.json()["results"]
    assert [term["code"] for term in results] == [
        "none",
        "customer_delay",
        "lost_margin",
        "failed_delivery",
        "wrong_item_shipped",
        "chargeback",
    ]
    assert results[-1] == {
        "id": label_taxonomy["impact"]["chargeback"].pk,
        "kind": "impact",
        "code": "chargeback",
        "name": "Chargeback",
        "description": "The customer disputed the payment or was refunded.",
        "weight": 5,
        "position": 50,
        "is_active": True,
    }


def test_terms_filtered_by_active(agent, label_taxonomy):
    term = label_taxonomy["cause"]["other"]
    term.is_active = False
    term.save(update_fields=["is_active"])

    response = api_for(agent).get(TERMS_URL, {"kind": "cause", "is_active": "false"})

    assert [row["code"] for row in response.json()["results"]] == ["other"]


def test_terms_need_view_permission(outsider, label_taxonomy):
    response = api_for(outsider).get(TERMS_URL)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_terms_reject_unknown_kind(agent, label_taxonomy):
    response = api_for(agent).get(TERMS_URL, {"kind": "mood"})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["kind"]


# --- Adding labels --------------------------------------------------------------------------


def test_add_label_on_review_item(item, agent, label_taxonomy):
    response = api_for(agent).post(
        LABELS_URL, body(label_taxonomy, review_item=item.pk), format="json"
    )

    assert response.status_code == 201
    label = ErrorLabel.objects.get()
    data = response.json()
    assert data == {
        "id": label.pk,
        "decision": None,
        "review_item": item.pk,
        "cause": {
            "id": label_taxonomy["cause"]["stale_stock"].pk,
            "code": "stale_stock",
            "name": "Stale stock figures",
            "weight": 1,
        },
        "impact": {
            "id": label_taxonomy["impact"]["customer_delay"].pk,
            "code": "customer_delay",
            "name": "Customer delay",
            "weight": 2,
        },
        "corrective_action": {
            "id": label_taxonomy["corrective_action"]["fix_channel_data"].pk,
            "code": "fix_channel_data",
            "name": "Fix the channel data",
            "weight": 1,
        },
        "note": "Stock count was two days old.",
        "fix": None,
        "fixed_in": None,
        "labelled_by": "alice",
        "labelled_at": data["labelled_at"],
    }
    assert data["labelled_at"].startswith(str(timezone.now().year))


def test_add_label_on_decision_marks_error(order, manager_user, label_taxonomy):
    decision = decisions_create(order, 1)[0]

    response = api_for(manager_user).post(
        LABELS_URL, body(label_taxonomy, decision=decision.pk, review_item=None), format="json"
    )

    assert response.status_code == 201
    assert response.json()["decision"] == decision.pk
    decision.refresh_from_db()
    assert decision.outcome == DecisionOutcome.ERROR


@pytest.mark.parametrize(
    ("overrides", "field", "code", "message"),
    [
        (
            {"cause": ("impact", "chargeback")},
            "cause",
            "wrong_term_kind",
            "'chargeback' is an impact, not a cause.",
        ),
        (
            {"corrective_action": ("cause", "other")},
            "corrective_action",
            "wrong_term_kind",
            "'other' is a cause, not a corrective action.",
        ),
    ],
)
def test_add_label_wrong_kind(item, agent, label_taxonomy, overrides, field, code, message):
    values = {name: label_taxonomy[kind][term].pk for name, (kind, term) in overrides.items()}

    response = api_for(agent).post(
        LABELS_URL, body(label_taxonomy, review_item=item.pk, **values), format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": code, "message": "Invalid input.", "fields": {field: [message]}}
    }
    assert ErrorLabel.objects.count() == 0


def test_add_label_switched_off_term(item, agent, label_taxonomy):
    term = label_taxonomy["corrective_action"]["revise_prompt"]
    term.is_active = False
    term.save(update_fields=["is_active"])

    response = api_for(agent).post(
        LABELS_URL,
        body(label_taxonomy, review_item=item.pk, corrective_action=term.pk),
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "term_inactive"
    assert error["fields"] == {
        "corrective_action": [
            "'revise_prompt' is switched off; choose an active corrective action."
        ]
    }


def test_add_label_unknown_term(item, agent, label_taxonomy):
    response = api_for(agent).post(
        LABELS_URL, body(label_taxonomy, review_item=item.pk, impact=999999), format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "term_not_found"
    assert response.json()["error"]["fields"] == {"impact": ["Label term 999999 does not exist."]}


@pytest.mark.parametrize("targets", ["none", "both"])
def test_add_label_needs_one_target(order, item, manager_user, label_taxonomy, targets):
    decision = decisions_create(order, 1)[0]
    ids = {"decision": decision.pk, "review_item": item.pk} if targets == "both" else {}

    response = api_for(manager_user).post(LABELS_URL, body(label_taxonomy, **ids), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_target"
    assert error["fields"] == {
        "target": [
            "Give exactly one of decision and review_item: the label belongs to one of them."
        ]
    }
    assert ErrorLabel.objects.count() == 0


def test_add_label_unknown_decision(manager_user, label_taxonomy):
    response = api_for(manager_user).post(
        LABELS_URL, body(label_taxonomy, decision=424242), format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"decision": ["Decision 424242 does not exist."]}


def test_add_label_malformed_input(item, agent, label_taxonomy):
    response = api_for(agent).post(
        LABELS_URL,
        body(label_taxonomy, review_item=item.pk, cause="stale_stock", note="x" * 2001),
        format="json",
    )

    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == ["cause", "note"]


def test_agent_may_not_label_decision_over_api(order, agent, label_taxonomy):
    decision = decisions_create(order, 1)[0]

    response = api_for(agent).post(
        LABELS_URL, body(label_taxonomy, decision=decision.pk), format="json"
    )

    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "forbidden",
        "message": "You do not have permission to label decisions.",
        "fields": {},
    }


def test_add_label_needs_login(item, label_taxonomy):
    response = APIClient().post(LABELS_URL, body(label_taxonomy, review_item=item.pk))

    assert response.status_code == 401


def test_labels_cannot_be_changed_or_deleted(item, agent, label_taxonomy):
    label = error_label_add(
        user=agent,
        review_item_id=item.pk,
        cause_id=label_taxonomy["cause"]["other"].pk,
        impact_id=label_taxonomy["impact"]["none"].pk,
        corrective_action_id=label_taxonomy["corrective_action"]["none"].pk,
    )
    client = api_for(User.objects.create_superuser("su", password="pw"))

    assert client.patch(f"{LABELS_URL}{label.pk}/", {"note": "x"}).status_code == 405
    assert client.delete(f"{LABELS_URL}{label.pk}/").status_code == 405


# --- Listing labels -------------------------------------------------------------------------


@pytest.fixture
def labelled(order, item, manager_user, label_taxonomy) -> dict:
    """A label on a decision (a week old) and a newer label on a review item."""
    decision = decisions_create(order, 1)[0]
    on_decision = error_label_add(
        user=manager_user,
        decision_id=decision.pk,
        cause_id=label_taxonomy["cause"]["wrong_sku_match"].pk,
        impact_id=label_taxonomy["impact"]["wrong_item_shipped"].pk,
        corrective_action_id=label_taxonomy["corrective_action"]["fix_mapping"].pk,
    )
    ErrorLabel.objects.filter(pk=on_decision.pk).update(
        labelled_at=timezone.now() - timedelta(days=7)
    )
    on_item = error_label_add(
        user=manager_user,
        review_item_id=item.pk,
        cause_id=label_taxonomy["cause"]["stale_stock"].pk,
        impact_id=label_taxonomy["impact"]["customer_delay"].pk,
        corrective_action_id=label_taxonomy["corrective_action"]["fix_channel_data"].pk,
    )
    return {"decision": decision, "item": item, "on_decision": on_decision, "on_item": on_item}


def ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_list_labels_newest_first(agent, labelled):
    response = api_for(agent).get(LABELS_URL)

    assert response.status_code == 200
    assert ids(response) == [labelled["on_item"].pk, labelled["on_decision"].pk]


def test_list_labels_filters(agent, labelled):
    client = api_for(agent)
    three_days_ago = (timezone.now() - timedelta(days=3)).isoformat()

    assert ids(client.get(LABELS_URL, {"decision": labelled["decision"].pk})) == [
        labelled["on_decision"].pk
    ]
    assert ids(client.get(LABELS_URL, {"review_item": labelled["item"].pk})) == [
        labelled["on_item"].pk
    ]
    assert ids(client.get(LABELS_URL, {"cause": "stale_stock"})) == [labelled["on_item"].pk]
    assert ids(client.get(LABELS_URL, {"impact": "wrong_item_shipped"})) == [
        labelled["on_decision"].pk
    ]
    assert ids(client.get(LABELS_URL, {"since": three_days_ago})) == [labelled["on_item"].pk]
    assert ids(client.get(LABELS_URL, {"until": three_days_ago})) == [labelled["on_decision"].pk]


def test_list_labels_invalid_since(agent, labelled):
    response = api_for(agent).get(LABELS_URL, {"since": "last week"})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["since"]


def test_list_labels_need_view_permission(outsider, labelled):
    assert api_for(outsider).get(LABELS_URL).status_code == 403


def test_list_labels_query_count_flat(
    order, manager_user, agent, labelled, label_taxonomy, django_assert_max_num_queries
):
    for decision in decisions_create(order, 20):
        error_label_add(
            user=manager_user,
            decision_id=decision.pk,
            cause_id=label_taxonomy["cause"]["policy_gap"].pk,
            impact_id=label_taxonomy["impact"]["lost_margin"].pk,
            corrective_action_id=label_taxonomy["corrective_action"]["change_policy"].pk,
        )
    client = api_for(agent)

    # Permissions (2), the count and the page: the same for 2 labels as for 22.
    with django_assert_max_num_queries(4):
        response = client.get(LABELS_URL)

    assert response.json()["count"] == 22
