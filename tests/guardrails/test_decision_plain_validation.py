"""The plain-case validation of a proposal returns what DecisionProposeSerializer returns, and
leaves every other body to the serializer."""

from decimal import Decimal
from unittest import mock

import pytest
from rest_framework.exceptions import ValidationError

from guardrails.serializers import (
    PROPOSAL_STATE_MAX_BYTES,
    DecisionProposeSerializer,
    proposal_validated_plain,
)
from tests.guardrails.conftest_decisions import (  # noqa: F401
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"

PROPOSAL = {
    "action": "select_carrier",
    "order": 7,
    "before": {"carrier_service": None},
    "after": {"carrier_service": "ups/ground"},
    "confidence": "0.95",
    "model_name": "gpt-sub",
    "model_version": "2024-06",
    "rationale": "Cheapest.",
}
WITHOUT_RATIONALE = {key: value for key, value in PROPOSAL.items() if key != "rationale"}

# Bodies the plain path must take.
PLAIN = [
    PROPOSAL,
    WITHOUT_RATIONALE,
    PROPOSAL | {"confidence": 0.95},
    PROPOSAL | {"confidence": 1},
    PROPOSAL | {"confidence": 1e-7},
    PROPOSAL | {"confidence": " 0.5 "},
    PROPOSAL | {"confidence": "1E-3"},
    PROPOSAL | {"confidence": "-0.5"},
    PROPOSAL | {"action": "  select_carrier\n", "model_name": " m "},
    PROPOSAL | {"rationale": ""},
    PROPOSAL | {"rationale": "   "},
    PROPOSAL | {"rationale": "  Cheapest. \t"},
    PROPOSAL | {"rationale": "r" * 10_000},
    PROPOSAL | {"action": "a" * 64, "model_name": "m" * 200, "model_version": "v" * 100},
    PROPOSAL | {"model_name": "modèle 日本", "rationale": "Günstig 😀"},
    PROPOSAL | {"before": {}, "after": {"x": [1, 2.5, None, True, {"y": "z"}]}},
    PROPOSAL | {"before": {"note": "x" * (PROPOSAL_STATE_MAX_BYTES - len('{"note":""}'))}},
    PROPOSAL | {"order": -3, "unknown": "ignored"},
    PROPOSAL | {"order": 2**70},
]

# Bodies the plain path must leave to the serializer (valid or not).
NOT_PLAIN = [
    PROPOSAL | {"order": "7"},
    PROPOSAL | {"order": 7.0},
    PROPOSAL | {"order": True},
    PROPOSAL | {"order": None},
    {key: value for key, value in PROPOSAL.items() if key != "order"},
    {key: value for key, value in PROPOSAL.items() if key != "action"},
    PROPOSAL | {"action": ""},
    PROPOSAL | {"action": "   "},
    PROPOSAL | {"action": "a" * 65},
    PROPOSAL | {"action": 5},
    PROPOSAL | {"action": None},
    PROPOSAL | {"model_name": "m" * 201},
    PROPOSAL | {"model_version": "v" * 101},
    PROPOSAL | {"model_version": 2},
    PROPOSAL | {"model_name": "a\x00b"},
    PROPOSAL | {"model_name": "a\ud800b"},
    PROPOSAL | {"rationale": "r" * 10_001},
    PROPOSAL | {"rationale": 5},
    PROPOSAL | {"rationale": None},
    PROPOSAL | {"rationale": "a\x00"},
    PROPOSAL | {"rationale": "\udfff"},
    PROPOSAL | {"confidence": "high"},
    PROPOSAL | {"confidence": "NaN"},
    PROPOSAL | {"confidence": "sNaN"},
    PROPOSAL | {"confidence": "Infinity"},
    PROPOSAL | {"confidence": float("inf")},
    PROPOSAL | {"confidence": float("nan")},
    PROPOSAL | {"confidence": True},
    PROPOSAL | {"confidence": None},
    PROPOSAL | {"confidence": ""},
    PROPOSAL | {"confidence": "1" * 1001},
    PROPOSAL | {"confidence": [0.5]},
    PROPOSAL | {"before": None},
    PROPOSAL | {"before": [1]},
    PROPOSAL | {"after": "text"},
    PROPOSAL | {"after": {"note": "\ud800"}},
    PROPOSAL | {"before": {"note": "x" * PROPOSAL_STATE_MAX_BYTES}},
    [PROPOSAL],
    "text",
    None,
    {},
]


def _serializer_outcome(body) -> tuple[str, object]:
    serializer = DecisionProposeSerializer(data=body)
    try:
        serializer.is_valid(raise_exception=True)
    except ValidationError as error:
        return "invalid", error.detail
    return "valid", dict(serializer.validated_data)


@pytest.mark.parametrize("body", PLAIN)
def test_plain_body_matches_serializer(body):
    validated = proposal_validated_plain(body)
    outcome = _serializer_outcome(body)

    assert validated is not None
    assert outcome == ("valid", validated)
    for key, value in validated.items():
        assert type(value) is type(outcome[1][key]), key


@pytest.mark.parametrize("body", NOT_PLAIN)
def test_other_body_left_to_serializer(body):
    assert proposal_validated_plain(body) is None


def test_confidence_is_decimal():
    validated = proposal_validated_plain(PROPOSAL | {"confidence": 0.95})

    assert validated["confidence"] == Decimal("0.95")


def test_api_uses_serializer_only_when_needed(bot_api, order):
    """The view validates a plain body without the serializer, and any other with it."""
    from guardrails import api

    body = proposal(order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"})
    with mock.patch.object(api, "_validated", wraps=api._validated) as validated:
        assert bot_api.post(URL, body, "json").status_code == 201
        assert validated.call_count == 0

        response = bot_api.post(URL, body | {"model_version": 2}, "json")
        assert validated.call_count == 1
    # DRF's CharField turns the number into text, as before.
    assert response.status_code == 201, response.json()
    assert response.json()["model_version"] == "2"
