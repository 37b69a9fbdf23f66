"""The decisions API's error codes, and the docs that list them, agree."""

import json
import re
from pathlib import Path

import pytest

from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "guardrails" / "decisions.md"
URL = "/api/v1/decisions/"


def documented_codes() -> dict[str, str]:
    """The Errors table of the decisions doc: code -> the row's "when" text."""
    section = DOCS.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)`[^|]*\| (.+) \|$", section, re.MULTILINE)
    return {code: when for _, code, when in rows}


def post_confidence(bot_api, order, confidence) -> dict:
    body = proposal(order, "substitute_sku", *SUBSTITUTION, confidence=confidence)
    response = bot_api.post(URL, body, format="json")
    assert response.status_code == 400
    return response.json()["error"]


@pytest.mark.parametrize("confidence", ["abc", True, "NaN", "Infinity"])
def test_confidence_of_wrong_type_is_invalid(bot_api, order, confidence):
    error = post_confidence(bot_api, order, confidence)

    assert error["code"] == "invalid"
    assert error["fields"] == {"confidence": ["A valid number is required."]}
    assert "invalid" in documented_codes()


def test_json_number_too_large_is_invalid(bot_api, order):
    body = json.dumps(proposal(order, "substitute_sku", *SUBSTITUTION, confidence=0.5))
    body = body.replace('"confidence": 0.5', '"confidence": 1e999')

    response = bot_api.post(URL, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert "1e999" in DOCS.read_text()


@pytest.mark.parametrize("confidence", ["1.5", "-0.1"])
def test_confidence_out_of_range_is_invalid_confidence(bot_api, order, confidence):
    error = post_confidence(bot_api, order, confidence)

    assert error["code"] == "invalid_confidence"
    assert list(error["fields"]) == ["confidence"]
    # Only the range check gives this code, so the docs must not list wrong types under it.
    assert "not a number" not in documented_codes()["invalid_confidence"]


@pytest.mark.parametrize("verb", ["revert", "label"])
def test_revert_and_label_refusal_is_forbidden(bot_api, order, verb):
    response = bot_api.post(f"{URL}1/{verb}/", {"outcome": "error"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    heading = f"## {verb.capitalize()}: `POST /api/v1/decisions/<id>/{verb}/`"
    section = DOCS.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    assert "403 `forbidden`" in " ".join(section.split())
