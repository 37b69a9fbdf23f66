"""Disagreement rates per action and model version, and their API."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from guardrails.disagreement import (
    DisagreementRow,
    disagreement_rate_overall,
    disagreement_rates,
)
from guardrails.models import ActionType, Decision, GuardrailSettings, ReviewOutcome, Verdict
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)

URL = "/api/v1/decisions/disagreement/"


def decisions(order, action_code: str, model: tuple[str, str], outcomes: dict[str, int]) -> None:
    """Store decisions with the given review outcomes ("" for not reviewed)."""
    action = ActionType.objects.get(code=action_code)
    rows = []
    for outcome, count in outcomes.items():
        rows += [
            Decision(
                action=action,
                order=order,
                channel=order.channel,
                model_name=model[0],
                model_version=model[1],
                before=SUBSTITUTION[0],
                after=SUBSTITUTION[1],
                confidence=Decimal("0.9"),
                verdict=Verdict.QUEUED_FOR_REVIEW,
                facts={},
                review_outcome=outcome,
                reviewed_at=timezone.now() if outcome else None,
            )
            for _ in range(count)
        ]
    Decision.objects.bulk_create(rows)


@pytest.fixture(name="reviewed")
def reviewed_fixture(order) -> None:
    """Two model versions of the substitution model, a carrier model and some old reviews."""
    decisions(order, "substitute_sku", ("gpt-sub", "2024-06"), {"agreed": 9, "disagreed": 1})
    decisions(order, "substitute_sku", ("gpt-sub", "2024-09"), {"agreed": 3, "disagreed": 1})
    decisions(order, "select_carrier", ("carrier-rank", "1"), {"agreed": 2, "": 5})
    with time_machine.travel(timezone.now() - timedelta(days=40), tick=False):
        decisions(order, "select_carrier", ("carrier-rank", "1"), {"disagreed": 7})


def test_rates_per_action_and_model_version(reviewed, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = disagreement_rates(days=30)

    assert rows == [
        DisagreementRow("select_carrier", "carrier-rank", "1", 2, 0, Decimal("0.0000")),
        DisagreementRow("substitute_sku", "gpt-sub", "2024-06", 10, 1, Decimal("0.1000")),
        DisagreementRow("substitute_sku", "gpt-sub", "2024-09", 4, 1, Decimal("0.2500")),
    ]


def test_rates_window_from_settings(reviewed):
    GuardrailSettings.objects.filter(pk=1).update(disagreement_window_days=60)

    rows = {row.action_code: row for row in disagreement_rates()}

    assert rows["select_carrier"].reviewed == 9
    assert rows["select_carrier"].disagreed == 7
    assert rows["select_carrier"].rate == Decimal("0.7778")


def test_overall_rate(reviewed):
    total = disagreement_rate_overall(days=30)

    assert total.reviewed == 16
    assert total.disagreed == 2
    assert total.rate == Decimal("0.1250")


def test_overall_rate_narrowed(reviewed):
    total = disagreement_rate_overall(
        days=30, action_code="substitute_sku", model_version="2024-09"
    )

    assert (total.reviewed, total.disagreed, total.rate) == (4, 1, Decimal("0.2500"))


def test_overall_rate_without_reviews(order):
    total = disagreement_rate_overall(days=30)

    assert (total.reviewed, total.disagreed, total.rate) == (0, 0, None)


def test_outcome_from_review_service(order):
    """The review service marks the decision; the rate counts it."""
    from guardrails.services import decision_propose
    from reviews.services import review_item_reject

    decision = decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence="0.90",
        model_name="gpt-sub",
        model_version="2024-06",
    )
    review_item_reject(item_id=decision.review_item_id, user=make_user("casey", "cs_agent"))

    decision.refresh_from_db()
    assert decision.review_outcome == ReviewOutcome.DISAGREED
    assert disagreement_rates(days=1) == [
        DisagreementRow("substitute_sku", "gpt-sub", "2024-06", 1, 1, Decimal("1.0000"))
    ]


# --- API --------------------------------------------------------------------------------------


@pytest.fixture(name="manager_api")
def manager_api_fixture(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client


def test_api_lists_rates(reviewed, manager_api):
    response = manager_api.get(URL, {"days": 30})

    assert response.status_code == 200
    body = response.json()
    assert body["days"] == 30
    assert body["overall"] == {"reviewed": 16, "disagreed": 2, "rate": "0.1250"}
    assert body["results"][1] == {
        "action": "substitute_sku",
        "model_name": "gpt-sub",
        "model_version": "2024-06",
        "reviewed": 10,
        "disagreed": 1,
        "rate": "0.1000",
    }
    assert len(body["results"]) == 3


def test_api_default_window(reviewed, manager_api):
    body = manager_api.get(URL).json()

    assert body["days"] == 30
    assert body["overall"]["reviewed"] == 16


def test_url_name_resolves():
    assert reverse("decision-disagreement") == URL


@pytest.mark.parametrize("days", ["0", "-3", "abc", "99999"])
def test_api_bad_days(order, manager_api, days):
    response = manager_api.get(URL, {"days": days})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["days"]


def test_api_needs_view_permission(order):
    client = APIClient()
    client.force_authenticate(make_user("mallory", None))

    assert client.get(URL).status_code == 403
