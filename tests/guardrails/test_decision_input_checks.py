"""Input checks of POST /api/v1/decisions/: confidence typed as a number in the schema, a
rationale that must be text, and a size cap on `before` and `after`."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator

from guardrails.models import Decision
from guardrails.serializers import PROPOSAL_STATE_MAX_BYTES
from tests.guardrails.conftest_decisions import (  # noqa: F401
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"
SHIP_DATE = ("estimate_ship_date", {}, {"ship_date": "2026-12-07"})


def _propose_schema() -> dict:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["components"]["schemas"]["DecisionProposeRequest"]["properties"]


def test_schema_types_confidence_as_number():
    confidence = _propose_schema()["confidence"]

    assert confidence["type"] == "number"


@pytest.mark.parametrize("confidence", ["0.9", 0.9, 1])
def test_confidence_string_and_number_accepted(bot_api, order, confidence):
    response = bot_api.post(URL, proposal(order, *SHIP_DATE, confidence=confidence), "json")

    assert response.status_code == 201, response.json()
    assert response.json()["confidence"] == f"{float(confidence):.4f}"


@pytest.mark.parametrize("rationale", [5, 0.5, True, ["text"], {"text": "x"}])
def test_rationale_not_text_rejected(bot_api, order, rationale):
    response = bot_api.post(URL, proposal(order, *SHIP_DATE, rationale=rationale), "json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {"rationale": ["A JSON string is required."]}
    assert not Decision.objects.exists()


def _padded(size: int) -> dict:
    """Return an object whose compact JSON is exactly `size` bytes."""
    return {"note": "x" * (size - len('{"note":""}'))}


@pytest.mark.parametrize("field", ["before", "after"])
def test_proposal_state_over_cap_rejected(bot_api, order, field):
    action, before, after = SHIP_DATE
    body = proposal(order, action, before, after)
    body[field] = _padded(PROPOSAL_STATE_MAX_BYTES + 1)

    response = bot_api.post(URL, body, "json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert list(error["fields"]) == [field]
    expected = (
        f"Ensure this value is at most {PROPOSAL_STATE_MAX_BYTES} bytes as compact JSON "
        f"(it is {PROPOSAL_STATE_MAX_BYTES + 1})."
    )
    assert error["fields"][field] == [expected]
    assert not Decision.objects.exists()


# estimate_ship_date does not check `before`, so it can carry any object up to the cap.
def test_proposal_state_at_cap_accepted(bot_api, order):
    action, _, after = SHIP_DATE
    before = _padded(PROPOSAL_STATE_MAX_BYTES)

    response = bot_api.post(URL, proposal(order, action, before, after), "json")

    assert response.status_code == 201, response.json()
    assert Decision.objects.get().before == before


def test_proposal_state_counts_utf8_bytes(bot_api, order):
    """A character of two UTF-8 bytes counts as two, as it does on the wire and in the database."""
    action, _, after = SHIP_DATE
    before = _padded(PROPOSAL_STATE_MAX_BYTES)
    before["note"] = "é" + before["note"][2:]

    response = bot_api.post(URL, proposal(order, action, before, after), "json")

    assert response.status_code == 201, response.json()
    before["note"] = "é" + before["note"]
    response = bot_api.post(URL, proposal(order, action, before, after), "json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["before"]


def test_unpaired_surrogate_keeps_invalid_text(bot_api, order):
    action, _, after = SHIP_DATE
    body = json.dumps(proposal(order, action, {"note": "\ud800"}, after))

    response = bot_api.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_text"
    assert list(error["fields"]) == ["before"]
