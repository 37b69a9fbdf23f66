"""One fast test per bug the API fuzz suite found, so each stays fixed in every test run.

The fuzz suite (test_api_fuzz.py) finds such bugs among thousands of generated requests. These
tests send the one request that showed each bug and assert the exact response.
"""

import pytest
import yaml
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from inventory.models import Location, LocationKind
from omsguard.api_parsers import NUL_MESSAGE


@pytest.fixture
def admin_api(db) -> APIClient:
    user = User.objects.create_superuser("fuzz-finder", password="pw-fuzz-finder")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_order_with_huge_integer_gets_400(admin_api):
    body = b'{"channel": ' + b"9" * 5000 + b"}"

    response = admin_api.post(
        "/api/v1/orders/", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_stock_event_nested_too_deeply_gets_400(admin_api):
    response = admin_api.post(
        "/api/v1/inventory-discrepancies/", b"[" * 100_000, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert "nested too deeply" in response.json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data"])
def test_nul_in_body_gets_400(admin_api, content_type):
    Location.objects.create(code="WH", name="Warehouse", kind=LocationKind.WAREHOUSE)
    data = {"sku": "TEE", "location": "WH\x00", "counted": 1}

    if content_type == "application/json":
        response = admin_api.post("/api/v1/inventory-discrepancies/", data, format="json")
    else:
        response = admin_api.post("/api/v1/versions/", {"action": "a\x00"}, format="multipart")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    name = "location" if content_type == "application/json" else "action"
    assert fields == {name: [NUL_MESSAGE]}


def test_nested_nul_named_by_path(admin_api):
    response = admin_api.post(
        "/api/v1/stock-events/", [{"source": "pos"}, {"source": "p\x00s"}], format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"[1].source": [NUL_MESSAGE]}


def test_date_filter_large_offset_read_in_utc(admin_api):
    # Python accepts offsets up to 24 hours; PostgreSQL rejected +17:38 with a DataError.
    response = admin_api.get("/api/v1/orders/", {"created_after": "2154-07-07T15:12:35+17:38"})

    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.mark.parametrize("value", ["0.97", "yes", "flase"])
def test_boolean_filter_rejects_other_values(admin_api, value):
    response = admin_api.get("/api/v1/label-terms/", {"is_active": value})

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"is_active": ["Use true or false."]}


@pytest.mark.parametrize("value", ["true", "False", "1", ""])
def test_boolean_filter_accepts_true_false_and_empty(admin_api, value):
    response = admin_api.get("/api/v1/label-terms/", {"is_active": value})

    assert response.status_code == 200


def test_id_filter_rejects_number_beyond_bigint(admin_api):
    response = admin_api.get("/api/v1/error-labels/", {"decision": "3.4980002105628496e+136"})

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["decision"]


def test_operations_document_auth_errors(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("401", "403"):
                content = responses[status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/Error"}, (method, path, status)

    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]


def test_operations_document_body_and_lookup_errors(schema):
    accept = schema["paths"]["/api/v1/review-items/{id}/accept/"]["post"]["responses"]
    order_list = schema["paths"]["/api/v1/orders/"]["get"]["responses"]

    assert {"400", "404", "409", "413", "415"} <= set(accept)
    assert {"400", "404"} <= set(order_list)
    assert "413" not in order_list


def test_throttled_operation_documents_retry_after(schema):
    response = schema["paths"]["/api/v1/orders/"]["get"]["responses"]["429"]

    assert response["headers"]["Retry-After"]["required"] is True


def test_nullable_relations_are_nullable_in_schema(schema):
    components = schema["components"]["schemas"]

    assert components["Decision"]["properties"]["reverted_by"]["nullable"] is True
    assert components["ReviewItem"]["properties"]["assignee"]["nullable"] is True
    assert components["Canary"]["properties"]["ended_by"]["nullable"] is True


def test_order_create_documents_idempotency_key_and_answers(schema):
    create = schema["paths"]["/api/v1/orders/"]["post"]

    header = next(item for item in create["parameters"] if item["name"] == "Idempotency-Key")
    assert header["required"] is True
    assert header["schema"]["maxLength"] == 150
    assert {"201", "202", "409"} <= set(create["responses"])
    assert list(create["requestBody"]["content"]) == ["application/json"]
