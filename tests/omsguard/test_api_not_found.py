"""Paths under /api/ that no endpoint matches return a JSON 404, whatever the method."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.conftest import make_user


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_path_is_json_404(method):
    user = make_user("ivan", "integration")
    token = Token.objects.create(user=user)
    # enforce_csrf_checks: a POST without a CSRF token must still get the JSON response.
    client = Client(enforce_csrf_checks=True)

    response = getattr(client, method)(
        "/api/v1/nonexistent/", HTTP_AUTHORIZATION=f"Token {token.key}"
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"] == "No API endpoint at /api/v1/nonexistent/."
