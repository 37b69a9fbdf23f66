"""The proposal's response, built by `decision_representation`, is DecisionSerializer's output."""

import pytest
from rest_framework.renderers import JSONRenderer

from guardrails import api, services
from guardrails.models import Decision
from guardrails.serializers import DecisionSerializer, decision_representation
from guardrails.services import decision_propose, decision_revert
from tests.guardrails.conftest_decisions import (  # noqa: F401
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)
from tests.guardrails.test_decision_queries import CASES, URL, order_copy

VERDICT_CASES = pytest.mark.parametrize(
    ("verdict", "action", "before", "after", "confidence"),
    [case[:5] for case in CASES],
    ids=[case[0] for case in CASES],
)


def _bytes(body: dict) -> bytes:
    return JSONRenderer().render(body)


def _both(decision: Decision) -> tuple[bytes, bytes]:
    serializer = DecisionSerializer()
    return (
        _bytes(decision_representation(decision, serializer)),
        _bytes(serializer.to_representation(decision)),
    )


def _stored(decision_id: int) -> Decision:
    related = ("action", "channel", "policy_version__policy", "reverted_by", "labelled_by")
    return Decision.objects.select_related(*related).get(pk=decision_id)


@VERDICT_CASES
def test_representation_matches_serializer(order, verdict, action, before, after, confidence):
    decision = decision_propose(
        order_id=order.pk,
        action_code=action,
        before=before,
        after=after,
        confidence=confidence,
        model_name="gpt-sub",
        model_version="2024-06",
        rationale="Same item, other brand.",
    )

    assert decision.verdict == verdict
    ours, drf = _both(decision)
    assert ours == drf
    ours, drf = _both(_stored(decision.pk))
    assert ours == drf


@VERDICT_CASES
def test_response_matches_serializer(
    bot_api, order, monkeypatch, verdict, action, before, after, confidence
):
    # The first proposal of an action warms the caches, as in test_decision_queries.
    bot_api.post(URL, proposal(order_copy(order, 1), action, before, after), "json")
    decisions, propose = [], services.decision_propose

    def propose_kept(**arguments):
        decisions.append(propose(**arguments))
        return decisions[-1]

    monkeypatch.setattr(api.services, "decision_propose", propose_kept)
    response = bot_api.post(
        URL, proposal(order, action, before, after, confidence=confidence), "json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["verdict"] == verdict
    # Compared with the decision the view returned, because PostgreSQL's jsonb reorders the
    # keys of `before` and `after` in a decision read back.
    assert response.content == _bytes(DecisionSerializer(decisions[0]).data)


def test_reverted_and_labelled_decision_matches_serializer(order, manager):
    case = CASES[0]
    decision = decision_propose(
        order_id=order.pk,
        action_code=case[1],
        before=case[2],
        after=case[3],
        confidence=case[4],
        model_name="gpt-sub",
        model_version="2024-06",
    )
    decision_revert(decision_id=decision.pk, user=manager, note="wrong item")

    stored = _stored(decision.pk)
    assert stored.reverted_by == stored.labelled_by == manager
    ours, drf = _both(stored)
    assert ours == drf
