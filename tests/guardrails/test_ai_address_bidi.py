"""An AI's proposed address with bidirectional controls is rejected before any review."""

import pytest

from guardrails.models import Decision

from .conftest_decisions import (  # noqa: F401 (fixtures)
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"


@pytest.mark.parametrize(
    ("action", "field"),
    [
        ("correct_shipping_address", "shipping_address"),
        ("change_billing_address", "billing_address"),
    ],
)
def test_ai_address_with_bidi_is_400(bot_api, order, action, field):
    address = {**order.shipping_address, "address1": "14 \u202eBirch Lane"}
    body = proposal(order, action, {field: getattr(order, field)}, {field: address})

    response = bot_api.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    message = str(response.json())
    assert f"{field}.address1" in message
    assert "U+202E" in message
    assert not Decision.objects.exists()
