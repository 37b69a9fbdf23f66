"""The labelled child metrics that PrometheusAfterMetaMiddleware keeps (omsguard/middleware.py).

The middleware looks each combination of label values up once and keeps the children. Every
request must still change the same samples by the same amounts as django-prometheus's own
PrometheusAfterMiddleware, on the first request of a combination and on later ones, and past
the cache's size limit.
"""

import functools

import pytest
from django.http import HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from django.urls import resolve
from django_prometheus.middleware import PrometheusAfterMiddleware
from prometheus_client import REGISTRY

from omsguard import middleware
from omsguard.middleware import PrometheusAfterMetaMiddleware
from tests.conftest import as_body, order_payload, signed_headers

WEBHOOK_PATH = "/webhooks/shopify/shop/"


def _samples() -> dict[tuple, float]:
    """Every django_http_* sample of the registry, by name and labels.

    Left out: the creation times of children, and the sums and buckets of latency histograms,
    which depend on the clock; their counts are kept.
    """
    values = {}
    for family in REGISTRY.collect():
        if not family.name.startswith("django_http_"):
            continue
        for sample in family.samples:
            timed = family.type == "histogram" and "latency" in family.name
            timed = timed and not sample.name.endswith("_count")
            if timed or sample.name.endswith("_created"):
                continue
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _increase(run) -> dict[tuple, float]:
    before = _samples()
    run()
    after = _samples()
    changed = {key: after[key] - before.get(key, 0.0) for key in after}
    return {key: change for key, change in changed.items() if change}


def _request(method: str = "POST", *, ajax: bool = False, resolved: bool = True):
    headers = {"X-Requested-With": "XMLHttpRequest"} if ajax else {}
    request = RequestFactory().generic(
        method, WEBHOOK_PATH, data=b"x" * 77, content_type="text/plain", headers=headers
    )
    if resolved:
        request.resolver_match = resolve(WEBHOOK_PATH)
    return request


def _middleware(middleware_class, response_class=HttpResponse, status=200):
    """The middleware over a view that calls its process_view, as Django's handler does.

    A request with a `test_response` attribute, (response class, status), gets that response.
    """

    def view(request):
        instance.process_view(request, view, (), {})
        cls, code = getattr(request, "test_response", (response_class, status))
        if cls is StreamingHttpResponse:
            return StreamingHttpResponse(iter([b"a", b"b"]), status=code)
        return cls(b"body", status=code)

    instance = middleware_class(view)
    return instance


def _through(middleware_class, request, **options):
    return functools.partial(_middleware(middleware_class, **options), request)


SCENARIOS = {
    "webhook": {},
    "ajax": {"ajax": True},
    "unchecked method": {"method": "BREW"},
    "not found": {"status": 404},
    "streaming": {"response_class": StreamingHttpResponse},
}


def _scenario_request(name: str):
    options = dict(SCENARIOS[name])
    request = _request(options.pop("method", "POST"), ajax=options.pop("ajax", False))
    request.test_response = (
        options.pop("response_class", HttpResponse),
        options.pop("status", 200),
    )
    return request


@pytest.mark.parametrize("name", SCENARIOS)
def test_cached_children_count_as_django_prometheus(name):
    theirs = _increase(_through(PrometheusAfterMiddleware, _scenario_request(name)))
    ours = _through(PrometheusAfterMetaMiddleware, _scenario_request(name))

    first = _increase(ours)
    second = _increase(ours)

    assert first == theirs
    assert second == theirs


def test_one_instance_counts_every_scenario_apart():
    """One middleware, as in a server process, receives every scenario twice, in turn."""
    ours = _middleware(PrometheusAfterMetaMiddleware)
    for name in [*SCENARIOS, *SCENARIOS]:
        theirs = _increase(_through(PrometheusAfterMiddleware, _scenario_request(name)))

        assert _increase(functools.partial(ours, _scenario_request(name))) == theirs, name


def test_unresolved_request_counts_as_django_prometheus():
    def run(middleware_class):
        request = _request(resolved=False)
        instance = middleware_class(lambda request: HttpResponse(status=404))
        return lambda: instance(request)

    theirs = _increase(run(PrometheusAfterMiddleware))

    assert _increase(run(PrometheusAfterMetaMiddleware)) == theirs


def test_response_without_start_time_counts_unknown_latency():
    def run(middleware_class):
        instance = middleware_class(lambda request: HttpResponse())
        return lambda: instance.process_response(_request(), HttpResponse())

    theirs = _increase(run(PrometheusAfterMiddleware))

    assert _increase(run(PrometheusAfterMetaMiddleware)) == theirs
    assert (("django_http_requests_unknown_latency_total", ()), 1.0) in theirs.items()


def test_counts_stay_right_past_cache_limit(monkeypatch):
    monkeypatch.setattr(middleware, "LABELLED_CHILDREN_LIMIT", 2)
    ours = _middleware(PrometheusAfterMetaMiddleware)

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        theirs = _increase(_through(PrometheusAfterMiddleware, _request(method)))
        run = functools.partial(ours, _request(method))
        assert _increase(run) == theirs
        assert _increase(run) == theirs

    assert len(ours._children) == 2


@pytest.mark.django_db
def test_signed_webhook_metrics_match_uncached(channel, client, monkeypatch):
    """A whole signed webhook request: the same samples change with the cache and without it."""

    def post(webhook_id):
        body = as_body(order_payload())
        return lambda: client.post(
            WEBHOOK_PATH,
            data=body,
            content_type="application/json",
            headers=signed_headers(body, webhook_id=webhook_id),
        )

    cached_first = _increase(post("wh-ack2-1"))
    cached_again = _increase(post("wh-ack2-2"))
    # Without the cache every lookup goes through labels(), as in django-prometheus.
    monkeypatch.setattr(
        PrometheusAfterMetaMiddleware, "_labelled", lambda self, key, build: build()
    )
    uncached = _increase(post("wh-ack2-3"))

    assert cached_first == uncached
    assert cached_again == uncached
    status_key = (
        "django_http_responses_total_by_status_view_method_total",
        (("method", "POST"), ("status", "200"), ("view", "webhooks:shopify")),
    )
    assert uncached[status_key] == 1
