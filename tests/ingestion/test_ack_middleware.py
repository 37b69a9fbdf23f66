"""The shorter middleware chain of webhook requests (WebhookMiddlewareChain) and the CSP
middleware that builds the site-wide policy once (SitePolicyCSPMiddleware).

A webhook request skips sessions, CSRF, authentication, messages, htmx and axes. Its response
must still carry every header the full chain gives it, and every other path must still run the
full chain.
"""

import pytest
from csp.constants import NONCE, NONE, SELF
from csp.middleware import CSPMiddleware
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse

from omsguard import middleware
from omsguard.middleware import SitePolicyCSPMiddleware
from tests.conftest import as_body, order_payload, signed_headers
from tests.security.test_headers import assert_policy

pytestmark = pytest.mark.django_db

# Request attributes that the skipped middleware set: sessions, auth, messages and htmx.
SKIPPED_MIDDLEWARE_ATTRIBUTES = ("session", "user", "_messages", "htmx")


def _post_order(client, webhook_id: str = "wh-chain"):
    body = as_body(order_payload())
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=webhook_id),
    )


def test_webhook_skips_session_and_auth(channel, client):
    response = _post_order(client)

    assert response.status_code == 200
    for name in SKIPPED_MIDDLEWARE_ATTRIBUTES:
        assert not hasattr(response.wsgi_request, name), name


def test_webhook_keeps_security_headers(channel, client):
    response = _post_order(client)

    assert_policy(response)
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["Content-Length"] == str(len(response.content))
    assert "Set-Cookie" not in response
    assert "Vary" not in response


def test_webhook_unknown_channel_gets_json_404(db, client):
    body = as_body(order_payload())
    response = client.post(
        "/webhooks/shopify/nowhere/",
        data=body,
        content_type="application/json",
        headers=signed_headers(body),
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_channel"
    assert_policy(response)


def test_other_paths_run_full_chain(db, client):
    response = client.get("/healthz")

    assert response.status_code == 200
    for name in SKIPPED_MIDDLEWARE_ATTRIBUTES:
        assert hasattr(response.wsgi_request, name), name


def test_webhook_metrics_counted_by_view(channel, client):
    from django_prometheus.middleware import Metrics

    counter = Metrics.get_instance().responses_by_status_view_method
    labels = {"status": "200", "view": "webhooks:shopify", "method": "POST"}
    before = counter.labels(**labels)._value.get()

    _post_order(client)

    assert counter.labels(**labels)._value.get() == before + 1


def _after_metric_values() -> dict[str, float]:
    from django_prometheus.middleware import Metrics

    metrics = Metrics.get_instance()
    body_bytes = metrics.requests_body_bytes
    return {
        "post": metrics.requests_by_method.labels(method="POST")._value.get(),
        "http": metrics.requests_by_transport.labels(transport="http")._value.get(),
        "ajax": metrics.requests_ajax._value.get(),
        "body_bytes_sum": body_bytes._sum.get(),
        "body_bytes_count": sum(bucket.get() for bucket in body_bytes._buckets),
    }


def _after_metric_increase(middleware_class, request) -> dict[str, float]:
    before = _after_metric_values()
    middleware_class(lambda request: HttpResponse()).process_request(request)
    after = _after_metric_values()
    return {name: after[name] - before[name] for name in before}


@pytest.mark.parametrize("ajax", [False, True])
def test_meta_metrics_match_django_prometheus(ajax):
    from django_prometheus.middleware import PrometheusAfterMiddleware

    headers = {"X-Requested-With": "XMLHttpRequest"} if ajax else {}

    def request():
        return RequestFactory().post(
            "/webhooks/shopify/shop/", data=b"x" * 123, content_type="text/plain", headers=headers
        )

    ours = _after_metric_increase(middleware.PrometheusAfterMetaMiddleware, request())
    theirs = _after_metric_increase(PrometheusAfterMiddleware, request())

    assert ours == theirs
    assert ours["body_bytes_sum"] == 123
    assert ours["ajax"] == (1 if ajax else 0)
    assert ours["post"] == 1


# SitePolicyCSPMiddleware against django-csp's own middleware.


def _csp_headers(middleware_class, request, response) -> dict[str, str]:
    instance = middleware_class(lambda request: response)
    result = instance(request)
    return {
        name: result[name]
        for name in ("Content-Security-Policy", "Content-Security-Policy-Report-Only")
        if name in result
    }


def test_site_policy_matches_django_csp():
    request = RequestFactory().get("/queue/")

    ours = _csp_headers(SitePolicyCSPMiddleware, request, HttpResponse())
    theirs = _csp_headers(CSPMiddleware, RequestFactory().get("/queue/"), HttpResponse())

    assert ours == theirs
    assert ours["Content-Security-Policy"]


def test_site_policy_follows_replaced_settings(settings):
    SitePolicyCSPMiddleware(lambda request: HttpResponse())(RequestFactory().get("/"))
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [NONE]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"img-src": [SELF]}}

    ours = _csp_headers(SitePolicyCSPMiddleware, RequestFactory().get("/"), HttpResponse())
    theirs = _csp_headers(CSPMiddleware, RequestFactory().get("/"), HttpResponse())

    assert ours == theirs
    assert ours["Content-Security-Policy"] == "default-src 'none'"
    assert "img-src 'self'" in ours["Content-Security-Policy-Report-Only"]


def test_nonce_uses_django_csp(settings):
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"script-src": [SELF, NONCE]}}
    request = RequestFactory().get("/")
    instance = SitePolicyCSPMiddleware(lambda request: HttpResponse())
    instance.process_request(request)
    nonce = str(request.csp_nonce)

    response = instance.process_response(request, HttpResponse())

    assert f"script-src 'self' 'nonce-{nonce}'" in response["Content-Security-Policy"]


def test_view_policy_uses_django_csp():
    response = HttpResponse()
    response._csp_update = {"img-src": ["data:"]}

    headers = _csp_headers(SitePolicyCSPMiddleware, RequestFactory().get("/"), response)

    assert "data:" in headers["Content-Security-Policy"]


def test_site_policy_respects_exemption():
    response = HttpResponse()
    response._csp_exempt = True

    headers = _csp_headers(SitePolicyCSPMiddleware, RequestFactory().get("/"), response)

    assert headers == {}


def test_site_policy_built_once(monkeypatch):
    calls = []
    real_build = middleware.build_policy

    def counting_build(**kwargs):
        calls.append(kwargs)
        return real_build(**kwargs)

    monkeypatch.setattr(middleware, "_site_policies", {})
    monkeypatch.setattr(middleware, "build_policy", counting_build)
    for _ in range(3):
        _csp_headers(SitePolicyCSPMiddleware, RequestFactory().get("/"), HttpResponse())

    # Once for the policy, once for the (empty) report-only policy.
    assert len(calls) == 2
