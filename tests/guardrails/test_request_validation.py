"""The decisions API validates request bodies with copies of one bound serializer, and gets
what a new serializer per request gets."""

from types import SimpleNamespace
from unittest import mock

import pytest
from rest_framework.exceptions import ValidationError

from guardrails.api import _serializer_bound, _validated
from guardrails.serializers import (
    DecisionLabelSerializer,
    DecisionProposeSerializer,
    DecisionRevertSerializer,
)

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

CASES = [
    (DecisionProposeSerializer, PROPOSAL),
    (DecisionProposeSerializer, {key: PROPOSAL[key] for key in PROPOSAL if key != "rationale"}),
    (DecisionProposeSerializer, PROPOSAL | {"order": "seven", "confidence": "high"}),
    (DecisionProposeSerializer, PROPOSAL | {"model_name": "m" * 201, "action": None}),
    (DecisionProposeSerializer, PROPOSAL | {"before": None, "after": [1, 2]}),
    (DecisionProposeSerializer, PROPOSAL | {"confidence": "NaN", "order": True}),
    (DecisionProposeSerializer, {}),
    (DecisionProposeSerializer, None),
    (DecisionProposeSerializer, [PROPOSAL]),
    (DecisionProposeSerializer, "text"),
    (DecisionRevertSerializer, {}),
    (DecisionRevertSerializer, {"note": "Wrong carrier.", "outcome": "correct"}),
    (DecisionRevertSerializer, {"outcome": "maybe"}),
    (DecisionLabelSerializer, {"outcome": "error", "note": "n" * 2001}),
    (DecisionLabelSerializer, {"outcome": "error"}),
]


def _outcome(validate) -> tuple[str, object]:
    try:
        return "valid", dict(validate())
    except ValidationError as error:
        return "invalid", error.detail


def _fresh(serializer_class, body):
    serializer = serializer_class(data=body)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@pytest.mark.parametrize(("serializer_class", "body"), CASES)
def test_validated_matches_new_serializer(serializer_class, body):
    request = SimpleNamespace(data=body)
    ours = _outcome(lambda: _validated(serializer_class, request))
    expected = _outcome(lambda: _fresh(serializer_class, body))

    assert ours == expected


def test_validated_repeats_after_error():
    """An invalid body leaves nothing behind for the next request."""
    bad = SimpleNamespace(data=PROPOSAL | {"order": "seven"})
    good = SimpleNamespace(data=PROPOSAL)
    with pytest.raises(ValidationError):
        _validated(DecisionProposeSerializer, bad)

    assert _validated(DecisionProposeSerializer, good)["order"] == 7


def test_validated_builds_fields_once():
    _serializer_bound.cache_clear()
    original = DecisionProposeSerializer.get_fields
    with mock.patch.object(
        DecisionProposeSerializer, "get_fields", autospec=True, side_effect=original
    ) as get_fields:
        for _ in range(3):
            _validated(DecisionProposeSerializer, SimpleNamespace(data=PROPOSAL))

    assert get_fields.call_count == 1


def test_rationale_longer_than_10000_characters_is_refused():
    """A new user stored a 2,000,000-character rationale; reviewers read it on the item."""
    at_limit = SimpleNamespace(data=PROPOSAL | {"rationale": "r" * 10_000})
    over = SimpleNamespace(data=PROPOSAL | {"rationale": "r" * 10_001})

    assert len(_validated(DecisionProposeSerializer, at_limit)["rationale"]) == 10_000
    with pytest.raises(ValidationError) as error:
        _validated(DecisionProposeSerializer, over)
    assert error.value.detail["rationale"] == [
        "Ensure this field has no more than 10000 characters."
    ]
