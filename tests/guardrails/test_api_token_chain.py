"""The shorter middleware chain of token requests under /api/ (ApiTokenMiddlewareChain).

A request with `Authorization: Token ...` skips sessions, CSRF, authentication, messages, htmx
and axes. Its response must carry every header the full chain gives it, a bad token must
still get DRF's 401, and any other request under /api/ must still run the full chain.
"""

from unittest import mock

import pytest
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.guardrails.conftest import channel_grant
from tests.guardrails.conftest_decisions import (  # noqa: F401
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)
from tests.security.test_headers import assert_policy

URL = "/api/v1/decisions/"
# Request attributes that the skipped middleware set: sessions, messages and htmx. DRF sets
# `user` on a token request itself.
SKIPPED_MIDDLEWARE_ATTRIBUTES = ("session", "_messages", "htmx")
SHIP_DATE = ("estimate_ship_date", {}, {"ship_date": "2026-12-07"})


@pytest.fixture
def token_header(integration_user, channel) -> dict[str, str]:
    channel_grant(integration_user, channel)
    return {"Authorization": f"Token {Token.objects.create(user=integration_user).key}"}


def _propose(client: Client, order, headers: dict[str, str]):
    return client.post(
        URL, proposal(order, *SHIP_DATE), content_type="application/json", headers=headers
    )


def test_token_request_skips_session(order, token_header):
    with mock.patch.object(SessionMiddleware, "process_request") as session_read:
        response = _propose(Client(), order, token_header)

    assert response.status_code == 201, response.json()
    session_read.assert_not_called()
    for name in SKIPPED_MIDDLEWARE_ATTRIBUTES:
        assert not hasattr(response.wsgi_request, name), name
    assert response.wsgi_request.user.username == "agent-bot"


def test_token_request_keeps_headers(order, token_header):
    response = _propose(Client(), order, token_header)

    assert response.status_code == 201
    assert_policy(response)
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Content-Length"] == str(len(response.content))
    assert "Set-Cookie" not in response


def test_token_keyword_any_case(order, token_header):
    header = {"Authorization": token_header["Authorization"].replace("Token", "token")}

    response = _propose(Client(), order, header)

    assert response.status_code == 201
    assert not hasattr(response.wsgi_request, "session")


@pytest.mark.parametrize(
    "header", ["Token " + "0" * 40, "Token", "Token a b"], ids=["unknown", "empty", "spaces"]
)
def test_bad_token_gets_401(db, header):
    response = Client().get(URL, headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Token"
    assert not hasattr(response.wsgi_request, "session")
    assert_policy(response)


def test_session_request_runs_full_chain(order, integration_user, channel):
    channel_grant(integration_user, channel)
    client = Client(enforce_csrf_checks=True)
    client.force_login(integration_user)

    listed = client.get(URL)
    proposed = _propose(client, order, {})

    assert listed.status_code == 200
    assert hasattr(listed.wsgi_request, "session")
    assert "Cookie" in listed["Vary"]
    # DRF's SessionAuthentication rejects a session POST without the CSRF token.
    assert proposed.status_code == 403
    assert "CSRF" in proposed.json()["error"]["message"]


def test_other_scheme_runs_full_chain(db):
    response = Client().get(URL, headers={"Authorization": "Bearer abc"})

    assert response.status_code in (401, 403)
    assert hasattr(response.wsgi_request, "session")


def test_token_outside_api_runs_full_chain(db, token_header):
    response = Client().get("/healthz", headers=token_header)

    assert response.status_code == 200
    assert hasattr(response.wsgi_request, "session")


def test_session_first_runs_full_chain(order, token_header, settings):
    """The token header decides the user only while token authentication comes first."""
    rest_framework = dict(settings.REST_FRAMEWORK)
    rest_framework["DEFAULT_AUTHENTICATION_CLASSES"] = [
        "rest_framework.authentication.SessionAuthentication",
        "omsguard.api_auth.TokenPermissionsAuthentication",
    ]
    settings.REST_FRAMEWORK = rest_framework

    response = _propose(Client(), order, token_header)

    assert response.status_code == 201
    assert hasattr(response.wsgi_request, "session")


def test_token_request_metrics_counted_by_view(order, token_header):
    from django_prometheus.middleware import Metrics

    counter = Metrics.get_instance().responses_by_status_view_method
    labels = {"status": "201", "view": "decision-list", "method": "POST"}
    before = counter.labels(**labels)._value.get()

    _propose(Client(), order, token_header)

    assert counter.labels(**labels)._value.get() == before + 1


def test_token_request_nul_query_gets_400(db, token_header):
    response = Client().get(f"{URL}?model_name=a%00b", headers=token_header)

    assert response.status_code == 400
    assert "model_name" in response.content.decode()


def test_unknown_api_path_gets_json_404(db, token_header):
    response = Client().post("/api/v1/nowhere/", data={}, headers=token_header)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_non_ascii_space_runs_full_chain(db, token_header):
    """DRF splits the header as ISO-8859-1 bytes, so a no-break space separates nothing."""
    header = {"Authorization": token_header["Authorization"].replace(" ", "\u00a0")}

    response = Client().get(URL, headers=header)

    assert response.status_code in (401, 403)
    assert hasattr(response.wsgi_request, "session")
