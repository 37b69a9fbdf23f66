"""POST /api/v1/stock-events/: status codes, replays, batches, validation and permissions."""

import pytest
from rest_framework.test import APIClient

from inventory.models import StockEvent, StockLevel
from tests.inventory.conftest import TEE, api_client, make_inventory_user

pytestmark = pytest.mark.django_db

URL = "/api/v1/stock-events/"


@pytest.fixture
def integration(catalog, locations) -> APIClient:
    return api_client(make_inventory_user("connector", "integration"))


def event(**overrides) -> dict:
    return {
        "source": "pos-store",
        "event_id": "ev-1",
        "sku": TEE,
        "location": "STORE",
        "kind": "delta",
        "quantity": 3,
        "version": 1,
        **overrides,
    }


def on_hand() -> int:
    return StockLevel.objects.get(sku__code=TEE, location__code="STORE").on_hand


def test_new_event_is_201_with_result(integration):
    response = integration.post(URL, event(occurred_at="2025-03-01T12:00:00Z"), format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["outcome"] == "applied"
    assert body["first_outcome"] == "applied"
    assert body["sku"] == TEE
    assert body["location"] == "STORE"
    assert (body["on_hand_before"], body["on_hand_after"]) == (0, 3)
    assert body["occurred_at"] == "2025-03-01T12:00:00Z"
    assert StockEvent.objects.get().posted_by.username == "connector"


def test_replay_is_200_duplicate_and_applied_once(integration):
    first = integration.post(URL, event(), format="json")

    replay = integration.post(URL, event(), format="json")

    assert replay.status_code == 200
    assert replay.json()["outcome"] == "duplicate"
    assert replay.json()["first_outcome"] == "applied"
    assert replay.json()["id"] == first.json()["id"]
    assert on_hand() == 3


def test_stale_and_rejected_are_recorded_with_201(integration):
    integration.post(URL, event(kind="absolute", quantity=2, version=5), format="json")

    stale = integration.post(URL, event(event_id="ev-2", version=4), format="json")
    rejected = integration.post(URL, event(event_id="ev-3", quantity=-9, version=6), format="json")

    assert stale.status_code == 201
    assert stale.json()["outcome"] == "stale"
    assert rejected.status_code == 201
    assert rejected.json()["outcome"] == "rejected"
    assert rejected.json()["reason"] == (
        "A delta of -9 would make on hand negative (2 on hand, -7 after)."
    )
    assert on_hand() == 2


def test_reused_event_id_is_409(integration):
    integration.post(URL, event(), format="json")

    response = integration.post(URL, event(quantity=4), format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "event_id_reused"
    assert error["message"].startswith("Event 'ev-1' from 'pos-store' was already received")


def test_batch_applies_in_order_and_returns_results(integration):
    batch = [
        event(event_id="a", kind="absolute", quantity=10, version=1),
        event(event_id="b", quantity=-4, version=2),
        event(event_id="c", quantity=1, version=2),
        event(event_id="a", kind="absolute", quantity=10, version=1),
    ]

    response = integration.post(URL, batch, format="json")

    assert response.status_code == 200
    outcomes = [result["outcome"] for result in response.json()["results"]]
    assert outcomes == ["applied", "applied", "stale", "duplicate"]
    assert on_hand() == 6


def test_batch_with_invalid_event_applies_nothing(integration):
    batch = [event(event_id="a"), event(event_id="b", sku="NOPE"), event(event_id="c", version=0)]

    response = integration.post(URL, batch, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {
        "1.sku": ["Unknown SKU code NOPE."],
        "2.version": ["Ensure this value is greater than or equal to 1."],
    }
    assert StockEvent.objects.count() == 0


def test_batch_conflict_names_index_and_keeps_earlier_events(integration):
    integration.post(URL, event(event_id="x"), format="json")
    batch = [event(event_id="y", version=2), event(event_id="x", quantity=99)]

    response = integration.post(URL, batch, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["message"].startswith("Event 1: Event 'x' from 'pos-store'")
    assert on_hand() == 6


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"sku": "NOPE"}, "sku", "Unknown SKU code NOPE."),
        ({"location": "MOON"}, "location", "Unknown location code MOON."),
        ({"quantity": 2.5}, "quantity", "A JSON integer is required."),
        ({"quantity": "3"}, "quantity", "A JSON integer is required."),
        ({"quantity": True}, "quantity", "A JSON integer is required."),
        ({"version": None}, "version", "This field may not be null."),
        ({"version": 0}, "version", "Ensure this value is greater than or equal to 1."),
        ({"kind": "set"}, "kind", '"set" is not a valid choice.'),
        (
            {"kind": "absolute", "quantity": -1},
            "quantity",
            "An absolute quantity must be 0 or more.",
        ),
        ({"occurred_at": "yesterday"}, "occurred_at", None),
        ({"event_id": ""}, "event_id", "This field may not be blank."),
    ],
)
def test_invalid_field_is_400_naming_it(integration, overrides, field, message):
    response = integration.post(URL, event(**overrides), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert list(error["fields"]) == [field]
    if message is not None:
        assert error["fields"][field] == [message]
    assert StockEvent.objects.count() == 0


@pytest.mark.parametrize(
    "missing", ["source", "event_id", "sku", "location", "kind", "quantity", "version"]
)
def test_missing_field_is_400_naming_it(integration, missing):
    payload = event()
    del payload[missing]

    response = integration.post(URL, payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {missing: ["This field is required."]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "The list of stock events is empty."),
        ("ev-1", "Send one stock event object or a list of them."),
    ],
)
def test_wrong_body_shape_is_400(integration, body, message):
    response = integration.post(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_batch_above_limit_is_400(integration, settings):
    settings.OMSGUARD_STOCK_EVENTS_MAX_BATCH = 2
    batch = [event(event_id=str(n), version=n + 1) for n in range(3)]

    response = integration.post(URL, batch, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "A list may contain at most 2 stock events, got 3. Split it into smaller lists."
    )


def test_form_encoded_body_is_415(integration):
    response = integration.post(URL, event(), format="multipart")

    assert response.status_code == 415


def test_cs_agent_may_not_post_stock_events(catalog, locations):
    client = api_client(make_inventory_user("alice", "cs_agent"))

    response = client.post(URL, event(), format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert StockEvent.objects.count() == 0


def test_anonymous_may_not_post_stock_events(catalog, locations):
    response = APIClient().post(URL, event(), format="json")

    assert response.status_code == 401


def test_listing_events_needs_view_permission(integration, catalog, locations):
    integration.post(URL, event(), format="json")
    manager = api_client(make_inventory_user("carol", "cs_manager"))

    assert integration.get(URL).status_code == 403
    response = manager.get(URL, {"outcome": "applied"})
    assert response.status_code == 200
    assert [item["event_id"] for item in response.json()["results"]] == ["ev-1"]


def test_stock_levels_show_availability_and_staleness(integration):
    integration.post(URL, event(), format="json")
    agent = api_client(make_inventory_user("alice", "cs_agent"))

    response = agent.get("/api/v1/stock-levels/", {"sku": TEE})

    assert response.status_code == 200
    [level] = response.json()["results"]
    assert (level["on_hand"], level["reserved"], level["available"]) == (3, 0, 3)
    assert level["is_stale"] is False


def test_schema_documents_stock_events(client):
    response = client.get("/api/schema/", {"format": "json"})

    schema = response.json()
    operation = schema["paths"]["/api/v1/stock-events/"]["post"]
    # The errors every operation with a body documents (omsguard.api_schema), and its own.
    common_errors = {"400", "401", "403", "413", "415", "429"}
    assert set(operation["responses"]) == {"200", "201", "409"} | common_errors
    request_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    one_of = schema["components"]["schemas"][request_ref.rsplit("/", 1)[1]]["oneOf"]
    assert one_of[0] == {"$ref": "#/components/schemas/StockEventInputRequest"}
    assert one_of[1]["type"] == "array"
    assert "StockEventResult" in schema["components"]["schemas"]
