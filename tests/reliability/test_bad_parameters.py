"""Bad query parameters on every list endpoint and page: 200 with defaults or 400, never a 5xx.

Every route of the URL configuration is either a target here, with the kind of each query
parameter its view reads, or exempt with a reason, and `test_route_table_knows_every_route`
fails when a new route appears in neither table. REST API routes get their parameters from
their view classes (FilterSet, OrderingFilter, pagination); HTML pages list theirs by hand.
Every admin changelist is a target too, with the parameters of its own filters.

Each target gets the bad values of each parameter's kind, one parameter at a time: malformed
ordering, huge and negative pages, invalid ids, UUIDs, dates and ISO weeks, NaN and 1e400,
NUL bytes and very long strings. Then it gets all its parameters at once, each twice, and
queries that do not depend on its parameters: unknown parameters, a NUL byte in a name,
invalid percent-encoding and UTF-8, and more fields than Django accepts. A path argument
gets invalid and out-of-range ids. A response passes when it is:

- 200: the bad value was ignored and the default applies. An HTML page number out of range
  shows the nearest page (Paginator.get_page);
- 400 naming the parameter: the API's JSON error body or the HTML page's error names it. An
  API page or page_size that is not a whole number in range gets this (docs/api.md), and a
  NUL character gets it on every route (omsguard/query_strings.py);
- 404 on the API, in its error body: for a page past the last one, for an id parameter that
  names no row, for a `format` no renderer offers, and on a detail route
  whose filters leave the object out (DRF filters detail querysets too);
- 404 for an invalid id in the path;
- 302 from an admin changelist, which redirects an invalid lookup to `?e=1` (Django's way).

Never a 5xx, never an exception out of the view, never a traceback in the body. The tests
log in as a superuser, so every view runs past its permission check.

Run alone: `pytest tests/reliability/test_bad_parameters.py`; OMSGUARD_RELIABILITY_SCALE=full
sends every bad value (about 5,800 requests), the default CI size about 800.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from unittest import mock
from urllib.parse import quote

import django_filters
import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin import filters as admin_filters
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client, RequestFactory, TestCase
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework import filters as drf_filters
from rest_framework import pagination as drf_pagination
from rest_framework.settings import api_settings

from catalog.models import ImportJob
from guardrails.models import Breaker, Canary, Decision, Version
from inventory.models import StockLevel
from monitoring.kpis import KPIS
from monitoring.models import Alert
from omsguard.celery import app as celery_app
from omsguard.query_strings import nul_parameter
from orders.models import Delivery, Order, Shipment
from reviews.models import AddressConfirmation, ErrorLabel, LabelTerm, ReviewItem
from tests.reliability.figures import figure, sized

from .bad_parameters_seed import CertainOnlyDraw, confirmation_token, seed

SUITE = "bad-parameters"

# --- Bad values per parameter kind ----------------------------------------------------------

HUGE_NUMBER = "99999999999999999999"
LONG_TEXT = "x" * 10_000
NUL = "\x00"

BAD_VALUES: dict[str, list[str]] = {
    "ordering": [
        "--created",
        ",",
        "-",
        "nonexistent",
        "created,,-id",
        "--created_at",
        "created_at,,-id",
        "channel__webhook_secret",
        NUL,
    ],
    "page": ["0", "-1", HUGE_NUMBER, "abc", "1e9", "last", "1.5", "²", NUL],
    "page_size": ["0", "-5", "100000", "x", HUGE_NUMBER, "1e3"],
    "id": ["not-a-uuid", NUL, "9" * 400, HUGE_NUMBER, "-1", "0", "1.5", "²", "[1]"],
    "date": [
        "2026-13-45",
        "yesterday",
        "0000-00-00",
        "9999-12-31",
        "0001-01-01",
        "2026-02-30",
        NUL,
    ],
    "datetime": [
        "2026-13-45",
        "yesterday",
        "0000-00-00",
        "2026-02-30T25:61:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        NUL,
    ],
    "week": ["2026-W99", "9999-W01", "0000-W01", "2026-W00", "2026-W1", "W01", "9999-W52", NUL],
    "number": ["NaN", "inf", "-inf", "1e400", "-1e400", "abc", HUGE_NUMBER, "0x10", "²", NUL],
    "choice": ["nonexistent", NUL, LONG_TEXT, "ÄÖÜ ✓", "%", "_"],
    "text": [NUL, LONG_TEXT, "ÄÖÜ ✓", "%", "_", "' OR 1=1 --"],
    "boolean": ["maybe", "2", NUL],
    # DRF's `format` override: a format that no renderer of the view offers.
    "format": ["xml", "ÄÖÜ", NUL],
    # The admin's `o`: dot-separated column numbers, each optionally with a leading "-".
    "admin_ordering": ["-", "abc", "1..2", "99", "-0.-0", "1e9", HUGE_NUMBER, NUL],
}

# NOTE: On SQLite, Django's admin date filters raise OverflowError for an aware datetime whose
# UTC value lies outside the years 1 to 9999, because the backend converts it to naive UTC;
# PostgreSQL accepts it. Production runs PostgreSQL, so the admin gets these two values there
# only. The API's own filters reject them with a 400 on both.
OUTSIDE_UTC_YEARS = {"9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"}
BAD_VALUES["admin_datetime"] = [
    value
    for value in BAD_VALUES["datetime"]
    if connection.vendor != "sqlite" or value not in OUTSIDE_UTC_YEARS
]

# 9999 is the last year Python dates allow, so Django cannot compute the end of that year. The
# admin site rejects it like any invalid lookup (omsguard/admin_dates.py).
BAD_VALUES["admin_year"] = ["abc", "0", "-1", "1e9", "²", "NaN", NUL, "9999", "10000"]

# Path arguments: the path is built with a valid value, which is then swapped for these.
BAD_PATH_VALUES: dict[str, list[str]] = {
    "int": ["0", HUGE_NUMBER, "9" * 400, "not-a-number"],
    "uuid": ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "0" * 300],
    "slug": ["nonexistent", "x" * 300],
    "str": ["nonexistent", "x" * 300, "%00"],
}
# Stand-ins that each converter accepts, swapped for the bad values after reverse().
PATH_SENTINELS = {
    "int": "987654321",
    "uuid": "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f",
    "slug": "zzsentinelzz",
    "str": "zzsentinelzz",
}

# Raw query strings that every target gets, whatever parameters it reads.
COMMON_QUERIES: dict[str, str] = {
    "unknown parameters": "zzz_unknown=1&__proto__=x&format_=y",
    "nul in a name": "%00=1&a%00b=2",
    "invalid percent-encoding": "x=%zz&y=%&z=%f",
    "invalid utf-8": "x=%ff%fe&%c3%28=1",
    "too many fields": "&".join(
        f"k{number}=v" for number in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)
    ),
}

# How much of the tables a run sends. Full: every bad value of every parameter. CI: one bad
# value per parameter and one common query per target, rotating with the target's position so
# that together the targets still send every value.
VALUES_PER_PARAMETER = int(sized(full=1_000, ci=1))
COMMON_PER_TARGET = int(sized(full=len(COMMON_QUERIES), ci=1))
PATH_VALUES_PER_ARGUMENT = int(sized(full=1_000, ci=1))
ADMIN_VALUES_PER_PARAMETER = int(sized(full=1_000, ci=1))
# The admin has some 60 changelists with about eight parameters each: CI probes two of them
# per changelist, rotating, besides the valid request and all parameters at once.
ADMIN_PARAMETERS_PER_CHANGELIST = int(sized(full=1_000, ci=2))


# --- The route table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One GET route and the query parameters its view reads, by kind."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    # Valid path arguments, read from the seeded database; None for a route without any.
    kwargs: Callable[[], dict] | None = None
    # Valid values of required parameters, sent with every probe unless it replaces them;
    # callable values are read from the seeded database.
    defaults: dict[str, str | Callable[[], object]] = field(default_factory=dict)
    # What the valid request gets: the home page redirects to the user's first page.
    statuses: frozenset[int] = frozenset({200})
    # Parameters whose error may name another one instead, as a range names its other end.
    related: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _first(model, attribute: str = "pk") -> Callable[[], object]:
    return lambda: getattr(model.objects.order_by("pk").first(), attribute)


def _kwargs(**getters: Callable[[], object]) -> Callable[[], dict]:
    return lambda: {name: getter() for name, getter in getters.items()}


ORDER = _first(Order)
QUEUE_FILTERS = {
    "kind": "choice",
    "channel": "text",
    "action": "text",
    "confidence_min": "number",
    "confidence_max": "number",
    "older_than": "number",
    "assignee": "text",
    "sort": "choice",
    "page": "page",
}
SIMULATE_FIELDS = {
    "action": "choice",
    "channel": "choice",
    "order_value": "number",
    "currency": "text",
    "item_price": "number",
    "confidence": "number",
    "customer_tier": "choice",
    "margin_rate": "number",
    "pickup_to_ship": "boolean",
    "listing_forbids": "boolean",
    "stock": "choice",
    "version": "id",
}

# HTML pages and the other GET endpoints outside DRF's router, with what their views read.
PAGE_TARGETS = [
    Target("home", statuses=frozenset({302})),
    Target("favicon", statuses=frozenset({301})),
    Target("health"),
    Target("login", {"next": "text"}),
    Target("metrics:metrics"),
    Target("reviews:queue", QUEUE_FILTERS),
    Target("reviews:queue_kind", QUEUE_FILTERS, _kwargs(kind=lambda: "address")),
    Target("reviews:item", {}, _kwargs(item_id=_first(ReviewItem))),
    Target("confirm:address", {"correct": "boolean"}, _kwargs(token=confirmation_token)),
    Target("orders:detail", {}, _kwargs(order_id=ORDER)),
    Target("orders:history", {}, _kwargs(order_id=ORDER)),
    Target("orders:history-json", {}, _kwargs(order_id=ORDER)),
    Target("orders:history-csv", {}, _kwargs(order_id=ORDER)),
    Target(
        "orders:history-export",
        {"from": "date", "to": "date", "format": "choice"},
        defaults={"from": "2026-01-01", "to": "2026-01-02"},
        related={"from": ("to",), "to": ("from",)},
    ),
    Target("catalog:import_list", {"page": "page"}),
    Target("catalog:import_job", {}, _kwargs(job_id=_first(ImportJob))),
    Target("catalog:import_progress", {}, _kwargs(job_id=_first(ImportJob))),
    Target("catalog:import_errors", {}, _kwargs(job_id=_first(ImportJob))),
    Target("guardrails:coverage", {"missing": "boolean"}),
    Target(
        "guardrails:simulate",
        SIMULATE_FIELDS,
        defaults={
            "action": "substitute_sku",
            "order_value": "40",
            "currency": "USD",
            "confidence": "0.93",
        },
    ),
    Target(
        "guardrails:calibration",
        {"action": "choice", "channel": "choice", "draft": "id", "existing": "boolean"},
        defaults={"action": "select_carrier"},
    ),
    Target("dashboard:index", {"days": "number", "channel": "choice"}),
    Target(
        "dashboard:kpi",
        {
            "days": "number",
            "channel": "choice",
            "dimension": "text",
            "page": "page",
            "page2": "page",
            "page3": "page",
        },
        _kwargs(slug=lambda: next(iter(KPIS))),
    ),
    Target(
        "alerts:list",
        {"status": "choice", "severity": "choice", "owner": "text", "rule": "id", "page": "page"},
    ),
    Target("alerts:detail", {}, _kwargs(alert_id=_first(Alert))),
    Target(
        "rollouts:list",
        {"kind": "choice", "status": "choice", "page": "page", "versions_page": "page"},
    ),
    Target("rollouts:canary", {}, _kwargs(canary_id=_first(Canary))),
    Target("rollouts:version", {}, _kwargs(version_id=_first(Version))),
    Target("labels:item", {}, _kwargs(item_id=_first(ReviewItem))),
    Target("labels:order_decisions", {}, _kwargs(order_id=_first(Decision, "order_id"))),
    Target(
        "labels:export",
        {"since": "date", "until": "date", "action": "text"},
        related={"since": ("until",), "until": ("since",)},
    ),
    Target("feedback:weekly", {"week": "week", "channel": "choice"}),
    Target("feedback:weekly-csv", {"week": "week", "channel": "choice"}),
    Target("feedback:fixes", {"status": "choice", "page": "page"}),
    Target("schema", {"format": "format", "lang": "choice"}),
    Target("api-docs"),
    Target("api-root"),
]

# REST API GET routes. Filters, ordering and pages come from the view classes (api_params);
# `params` adds what a custom action reads itself.
API_TARGETS = [
    Target("order-list"),
    Target("order-detail", {}, _kwargs(pk=ORDER)),
    Target("delivery-list"),
    Target("delivery-detail", {}, _kwargs(pk=_first(Delivery))),
    Target("review-item-list"),
    Target("review-item-detail", {}, _kwargs(pk=_first(ReviewItem))),
    Target("stock-event-list"),
    Target("stock-level-list"),
    Target("stock-level-detail", {}, _kwargs(pk=_first(StockLevel))),
    Target("inventory-discrepancy-list"),
    Target("breaker-list"),
    Target("breaker-detail", {}, _kwargs(pk=_first(Breaker))),
    Target("decision-list"),
    Target("decision-detail", {}, _kwargs(pk=_first(Decision))),
    Target("decision-disagreement", {"days": "number"}),
    Target("shipment-list"),
    Target("shipment-detail", {}, _kwargs(pk=_first(Shipment))),
    Target("fulfilment-exception-list"),
    Target("return-list"),
    Target("chargeback-list"),
    Target("version-list"),
    Target("version-detail", {}, _kwargs(pk=_first(Version))),
    Target("canary-list"),
    Target("canary-detail", {}, _kwargs(pk=_first(Canary))),
    Target("canary-comparison", {}, _kwargs(pk=_first(Canary))),
    Target(
        "canary-assignment",
        {"order": "id", "action": "text", "model": "text"},
        defaults={"order": ORDER, "action": "select_carrier", "model": "demo-history-agent"},
    ),
    Target("label-term-list"),
    Target("label-term-detail", {}, _kwargs(pk=_first(LabelTerm))),
    Target("error-label-list"),
    Target("error-label-detail", {}, _kwargs(pk=_first(ErrorLabel))),
]

POST_ONLY = (
    "POST only; its input is a form or JSON body, which the authorization and fuzz suites send"
)
POST_ONLY_ROUTES = (
    "logout",
    "webhooks:shopify",
    "webhooks:woocommerce",
    "webhooks:square",
    "reviews:accept",
    "reviews:reject",
    "reviews:revise",
    "reviews:claim",
    "reviews:release",
    "orders:history-revert",
    "guardrails:calibration_draft",
    "alerts:acknowledge",
    "alerts:silence",
    "alerts:unsilence",
    "alerts:remediate",
    "rollouts:share",
    "rollouts:pause",
    "rollouts:resume",
    "rollouts:stop",
    "rollouts:promote",
    "labels:item_add",
    "labels:decision_add",
    "feedback:fix-create",
    "feedback:fix-update",
    "marketplace-orders",
    "order-shortages",
    "order-carrier-recommendation",
    "version-activate",
    "canary-pause",
    "canary-promote",
    "canary-resume",
    "canary-share",
    "canary-stop",
    "review-item-accept",
    "review-item-claim",
    "review-item-reject",
    "review-item-release",
    "review-item-revise",
    "breaker-report-degradation",
    "breaker-report-recovery",
    "breaker-close",
    "breaker-open",
    "decision-label",
    "decision-revert",
)
# Routes that are no target, with the reason. test_exempt_routes_refuse_get checks that a GET
# to each POST-only route gets 405, so the exemption cannot hide a page.
EXEMPT: dict[str, str] = {name: POST_ONLY for name in POST_ONLY_ROUTES} | {
    "": "the catch-all under /api/ that answers a JSON 404 for any unknown API path",
}


def _routes(patterns=None, prefix: str = "", namespaces: tuple = ()) -> Iterator[tuple]:
    """Yield (namespaced name, route text, pattern) for every URL pattern outside the admin."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            route = prefix + str(pattern.pattern)
            if route.startswith("admin/"):
                continue
            namespace = (pattern.namespace,) if pattern.namespace else ()
            yield from _routes(pattern.url_patterns, route, namespaces + namespace)
        else:
            name = ":".join((*namespaces, pattern.name or ""))
            yield name, prefix + str(pattern.pattern), pattern


def _drf_get_routes() -> set[str]:
    """Return the names of the router's and the APIViews' routes that accept GET."""
    names = set()
    for name, _route, pattern in _routes():
        callback = pattern.callback
        actions = getattr(callback, "actions", None)
        view_class = getattr(callback, "cls", None)
        router_get = actions is not None and "get" in actions
        api_view_get = actions is None and view_class is not None and hasattr(view_class, "get")
        if router_get or api_view_get:
            names.add(name)
    return names


def _api_pattern(name: str) -> URLPattern:
    for route_name, _route, pattern in _routes():
        if route_name == name and getattr(pattern.callback, "actions", None):
            return pattern
    raise LookupError(f"No DRF router route named {name!r}.")


FILTER_KINDS: list[tuple[type, str]] = [
    (django_filters.IsoDateTimeFilter, "datetime"),
    (django_filters.DateTimeFilter, "datetime"),
    (django_filters.DateFilter, "date"),
    (django_filters.NumberFilter, "number"),
    (django_filters.ModelChoiceFilter, "id"),
    (django_filters.ChoiceFilter, "choice"),
    (django_filters.BooleanFilter, "boolean"),
    (django_filters.CharFilter, "text"),
]


def api_params(target: Target) -> dict[str, str]:
    """Return the query parameters of a DRF route by kind: its filters, ordering and pages."""
    callback = _api_pattern(target.name).callback
    view, overrides = callback.cls, callback.initkwargs
    params: dict[str, str] = {}

    filterset_class = overrides.get("filterset_class", getattr(view, "filterset_class", None))
    declared = filterset_class.base_filters.items() if filterset_class else []
    for name, declared_filter in declared:
        params[name] = next(
            (kind for kind_type, kind in FILTER_KINDS if isinstance(declared_filter, kind_type)),
            "text",
        )

    backends = overrides.get("filter_backends", view.filter_backends)
    if any(issubclass(backend, drf_filters.OrderingFilter) for backend in backends):
        params[drf_filters.OrderingFilter.ordering_param] = "ordering"

    if api_settings.URL_FORMAT_OVERRIDE:
        params[api_settings.URL_FORMAT_OVERRIDE] = "format"

    paginator = overrides.get("pagination_class", view.pagination_class)
    if paginator is not None and issubclass(paginator, drf_pagination.PageNumberPagination):
        params[paginator.page_query_param] = "page"
        if paginator.page_size_query_param:
            params[paginator.page_size_query_param] = "page_size"
    return params | target.params


ADMIN_FILTER_KINDS: list[tuple[type, str]] = [
    (admin_filters.DateFieldListFilter, "admin_datetime"),
    (admin_filters.RelatedFieldListFilter, "id"),
    (admin_filters.BooleanFieldListFilter, "boolean"),
    (admin_filters.EmptyFieldListFilter, "boolean"),
    (admin_filters.ChoicesFieldListFilter, "choice"),
    (admin_filters.SimpleListFilter, "choice"),
]
# Query parameters that admin views read themselves, beyond their changelist filters.
ADMIN_EXTRA_PARAMS: dict[str, dict[str, str]] = {
    "guardrails.shadowevaluation": {"policy_version__id__exact": "id"},
}
# Admin pages other than changelists that read the query string: (URL name, parameters).
ADMIN_PAGES = [("admin:guardrails_policyversion_add", {"policy": "id"})]


def admin_params(model_admin: admin.ModelAdmin, request) -> dict[str, str]:
    """Return a changelist's query parameters by kind, as its ChangeList reads them."""
    changelist = model_admin.get_changelist_instance(request)
    params = {"o": "admin_ordering", "p": "page"}
    if model_admin.get_search_fields(request):
        params["q"] = "text"
    for spec in changelist.filter_specs:
        kind = next(
            (kind for spec_type, kind in ADMIN_FILTER_KINDS if isinstance(spec, spec_type)), "text"
        )
        for name in spec.expected_parameters():
            params[name] = "boolean" if name.endswith("__isnull") else kind
    if model_admin.date_hierarchy:
        params[f"{model_admin.date_hierarchy}__year"] = "admin_year"
        params[f"{model_admin.date_hierarchy}__month"] = "number"
        params[f"{model_admin.date_hierarchy}__day"] = "number"
    return params | ADMIN_EXTRA_PARAMS.get(model_admin.model._meta.label_lower, {})


# --- The seeded database, shared by the module --------------------------------------------


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Seed once for the module, inside a transaction rolled back at the module's end.

    Each test's transaction nests inside it as a savepoint, so the tests see the rows and
    nothing outlives the module. Ingestion queues its processing on commit, so the seed runs
    its on-commit callbacks itself, with Celery eager.
    """
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        try:
            with (
                mock.patch("guardrails.sampling.random", CertainOnlyDraw()),
                mock.patch("reviews.known_answers.random", CertainOnlyDraw()),
                TestCase.captureOnCommitCallbacks(execute=True),
            ):
                seed()
            yield
        finally:
            celery_app.conf.task_always_eager = eager
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


# --- Sending and judging ---------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request of the suite and the statuses it may get."""

    route: str
    path: str
    query: str
    allowed: frozenset[int]
    # A response with a status in `named_on` must name one of these parameters.
    names: tuple[str, ...] = ()
    named_on: frozenset[int] = frozenset({400})


@dataclass(frozen=True)
class Rule:
    """The statuses a bad value of one parameter kind may get, and those that must name it."""

    allowed: frozenset[int]
    named_on: frozenset[int] = frozenset({400})


@dataclass
class Prober:
    """Send probes as one user and keep the tally of statuses and broken rules."""

    client: Client
    api: bool = False
    routes: set[str] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def send(self, probe: Probe) -> None:
        self.routes.add(probe.route)
        where = f"{probe.route} GET {probe.path}?{probe.query[:100]}"
        try:
            response, body = self._get(probe)
        except Exception as error:  # noqa: BLE001 - an error outside the view fails the probe too
            self.statuses["exception"] += 1
            self.failures.append(f"{where}: raised {type(error).__name__}: {error}"[:500])
            return

        self.statuses[response.status_code] += 1
        problem = self._problem(probe, response, body)
        if problem:
            self.failures.append(f"{where}: {problem}"[:500])

    def _get(self, probe: Probe) -> tuple:
        # A savepoint per request, so that a failed query cannot break the requests after it.
        url = f"{probe.path}?{probe.query}" if probe.query else probe.path
        with transaction.atomic():
            response = self.client.get(url)
            # A streamed export runs its queries while the body is read.
            body = b"".join(response.streaming_content) if response.streaming else response.content
            transaction.set_rollback(True)
        return response, body

    def _problem(self, probe: Probe, response, body: bytes) -> str:
        status = response.status_code
        if response.exc_info is not None:
            error = response.exc_info[1]
            return f"{status} from {type(error).__name__}: {error}"
        if status not in probe.allowed:
            return f"status {status}, expected one of {sorted(probe.allowed)}: {body[:200]!r}"
        if b"Traceback (most recent call last)" in body:
            return "the body contains a traceback"
        if self.api and status in (400, 404) and not _has_api_error_body(response):
            return f"{status} without the API error body: {body[:200]!r}"
        if status in probe.named_on and probe.names and not _names_any(body, probe.names):
            return f"{status} does not name {' or '.join(probe.names)}: {body[:300]!r}"
        return ""

    def report(self, label: str) -> None:
        # The client turns an exception in the view into a 500; "exception" counts the rest.
        server_errors = sum(
            count
            for status, count in self.statuses.items()
            if status == "exception" or status >= 500
        )
        figure(SUITE, f"{label}: routes covered", len(self.routes))
        figure(SUITE, f"{label}: requests sent", sum(self.statuses.values()))
        figure(SUITE, f"{label}: responses 5xx", server_errors)
        figure(SUITE, f"{label}: responses 400", self.statuses[400])
        figure(SUITE, f"{label}: responses 200", self.statuses[200])
        figure(SUITE, f"{label}: responses 404", self.statuses[404])
        if self.statuses[302]:
            figure(SUITE, f"{label}: responses 302", self.statuses[302])


def _has_api_error_body(response) -> bool:
    try:
        error = response.json().get("error", {})
    except ValueError:
        return False
    return bool(error.get("code")) and bool(error.get("message"))


def _names_any(body: bytes, names: tuple[str, ...]) -> bool:
    """Check whether the body names a parameter, as itself or as a label ("older than")."""
    text = body.decode("utf-8", "replace").lower()
    return any(name.lower() in text or name.lower().replace("_", " ") in text for name in names)


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


def _pick(values: list, count: int, offset: int) -> list:
    """Return `count` of `values` from `offset` on, wrapping; all of them when count covers it."""
    if count >= len(values):
        return list(values)
    return [values[(offset + step) % len(values)] for step in range(count)]


def _path_probes(name: str, kwargs: dict, offset: int) -> Iterator[Probe]:
    """One path argument at a time swapped for its bad values; each must get a 404."""
    pattern = next(pattern for route, _text, pattern in _routes() if route == name)
    converters = getattr(pattern.pattern, "converters", {})
    for argument in kwargs:
        converter = type(converters.get(argument)).__name__.removesuffix("Converter").lower()
        kind = converter if converter in PATH_SENTINELS else "int"
        marked = reverse(name, kwargs={**kwargs, argument: PATH_SENTINELS[kind]})
        for value in _pick(BAD_PATH_VALUES[kind], PATH_VALUES_PER_ARGUMENT, offset):
            path = marked.replace(PATH_SENTINELS[kind], quote(value, safe="%"))
            yield Probe(name, path, "", frozenset({404}))


def _parameter_probes(
    route: str,
    path: str,
    params: dict[str, str],
    *,
    offset: int,
    per_parameter: int,
    rule_for: Callable[[str], Rule],
    defaults: dict[str, str] | None = None,
    related: dict[str, tuple[str, ...]] | None = None,
    alone: int | None = None,
) -> Iterator[Probe]:
    """Each parameter alone with its bad values, then all of them at once and each twice.

    `defaults` are sent too, unless the probe replaces them, so a page that needs them
    reaches the code that reads the bad value. An error about a parameter may name one of
    its `related` ones instead (`to` for a bad `from`). `alone` limits how many parameters,
    rotating with `offset`, are probed one at a time.
    """
    defaults = defaults or {}
    related = related or {}
    indexed = list(enumerate(params.items()))
    for index, (name, kind) in _pick(indexed, len(indexed) if alone is None else alone, offset):
        kept = [(other, value) for other, value in defaults.items() if other != name]
        rule = rule_for(kind)
        names = (name, *related.get(name, ()))
        for value in _pick(BAD_VALUES[kind], per_parameter, offset + index):
            query = _query([*kept, (name, value)])
            if NUL in value:
                # Every route answers a NUL with 400 naming the parameter (query_strings.py).
                yield Probe(route, path, query, frozenset({400}), names)
            else:
                yield Probe(route, path, query, rule.allowed, names, rule.named_on)
    if params:
        pairs = [
            (name, value)
            for index, (name, kind) in enumerate(params.items())
            for value in _pick(BAD_VALUES[kind], 2, offset + index)
        ]
        every = frozenset({400}).union(*(rule_for(kind).allowed for kind in params.values()))
        yield Probe(route, path, _query(pairs), every, tuple(params))


def _common_probes(
    route: str, path: str, offset: int, allowed: set, defaults: dict[str, str] | None = None
) -> Iterator[Probe]:
    prefix = _query(list((defaults or {}).items()))
    for query in _pick(list(COMMON_QUERIES.values()), COMMON_PER_TARGET, offset):
        yield Probe(route, path, f"{prefix}&{query}" if prefix else query, frozenset(allowed))


def _target_probes(target: Target, *, api: bool, offset: int) -> Iterator[Probe]:
    kwargs = target.kwargs() if target.kwargs else {}
    path = reverse(target.name, kwargs=kwargs)
    params = api_params(target) if api else target.params
    defaults = {
        name: str(value() if callable(value) else value) for name, value in target.defaults.items()
    }
    ok = target.statuses | {200}

    def rule_for(kind: str) -> Rule:
        if api and kwargs:
            # DRF filters a detail route's queryset too, so a filter that leaves the object
            # out gets 404 "Not Found", as an unknown id does; a page is ignored there.
            return Rule(ok | {400, 404})
        if kind == "format":
            # DRF answers a format that no renderer of the view offers with 404.
            return Rule(ok | {404}, frozenset())
        if api and kind in ("page", "id"):
            # 400 for a page that is not a whole number of 1 or more; 404 for a page past
            # the last one or an id of no row.
            return Rule(ok | {400, 404}, frozenset({400, 404}))
        if kind == "page":
            # An HTML page shows the nearest page (Paginator.get_page).
            return Rule(ok)
        return Rule(ok | {400})

    yield Probe(target.name, path, _query(list(defaults.items())), target.statuses)
    yield from _parameter_probes(
        target.name,
        path,
        params,
        offset=offset,
        per_parameter=VALUES_PER_PARAMETER,
        rule_for=rule_for,
        defaults=defaults,
        related=target.related,
    )
    yield from _common_probes(target.name, path, offset, ok | {400}, defaults)
    if kwargs:
        yield from _path_probes(target.name, kwargs, offset)


def _admin_probes(model_admin: admin.ModelAdmin, request, offset: int) -> Iterator[Probe]:
    opts = model_admin.model._meta
    route = f"admin:{opts.app_label}_{opts.model_name}_changelist"
    path = reverse(route)
    # Django redirects an invalid lookup or page to ?e=1 and answers a disallowed one with a
    # plain 400 page that names nothing, so the probes do not ask for a parameter's name.
    allowed = frozenset({200, 302, 400})

    # The changelist of a model with one row (the settings) redirects to that row.
    yield Probe(route, path, "", frozenset({200, 302}))
    yield from _parameter_probes(
        route,
        path,
        admin_params(model_admin, request),
        alone=ADMIN_PARAMETERS_PER_CHANGELIST,
        offset=offset,
        per_parameter=ADMIN_VALUES_PER_PARAMETER,
        rule_for=lambda kind: Rule(allowed, frozenset()),
    )
    yield from _common_probes(route, path, offset, allowed)


def _assert_no_failures(prober: Prober) -> None:
    shown = "\n".join(prober.failures[:40])
    assert not prober.failures, f"{len(prober.failures)} probes failed:\n{shown}"


# --- Tests ---------------------------------------------------------------------------------


@pytest.fixture
def superuser_client(seeded, db, settings) -> Client:
    """A superuser's client, so that every page's view runs; exceptions land in exc_info."""
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    # The full size sends more API requests a minute than one user may; an empty rate
    # switches the limit off here, and the rate limits have their own tests.
    settings.OMSGUARD_RATE_LIMIT_API = ""
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username="admin"))
    return client


def test_seed_has_rows_to_order_and_page(seeded, db):
    # Ordering and pagination only run their code on rows. The short history brings no
    # chargeback, so the chargeback list is probed empty.
    for model in (Order, Delivery, ReviewItem, Decision, Shipment, Version, Canary, Alert):
        assert model.objects.exists(), model.__name__
    for model in (ErrorLabel, StockLevel, Breaker, ImportJob, AddressConfirmation):
        assert model.objects.exists(), model.__name__


@pytest.mark.parametrize(
    ("query_string", "name"),
    [
        ("", None),
        ("owner=ops&page=2", None),
        ("owner=%2500", None),
        ("owner=%00", "owner"),
        ("page=1&owner=a+%00b", "owner"),
        ("own%00er=1", "own\\x00er"),
        ("x=%zz&rule=%00", "rule"),
    ],
)
def test_nul_parameter_found_by_name(query_string, name):
    assert nul_parameter(query_string) == name


def test_route_table_knows_every_route():
    names = {name for name, _route, _pattern in _routes()}
    targets = {target.name for target in PAGE_TARGETS + API_TARGETS}

    unknown = names - targets - set(EXEMPT)
    assert not unknown, f"Routes in neither PAGE_TARGETS, API_TARGETS nor EXEMPT: {sorted(unknown)}"
    stale = (targets | set(EXEMPT)) - names
    assert not stale, f"Table entries for routes that no longer exist: {sorted(stale)}"
    assert not targets & set(EXEMPT), "A route is both a target and exempt."
    drf_get = _drf_get_routes()
    api_names = {target.name for target in API_TARGETS}
    assert drf_get - {"api-root", "schema", "api-docs"} == api_names, (
        "Every DRF route that answers GET is an API target, and no other."
    )


def test_exempt_routes_refuse_get(superuser_client):
    for name, route, pattern in _routes():
        if EXEMPT.get(name) != POST_ONLY:
            continue
        converters = getattr(pattern.pattern, "converters", {})
        arguments = {
            argument: PATH_SENTINELS.get(
                type(converter).__name__.removesuffix("Converter").lower(), "1"
            )
            for argument, converter in converters.items()
        }
        if not converters:
            arguments = {argument: "1" for argument in pattern.pattern.regex.groupindex}
            arguments.pop("format", None)
        response = superuser_client.get(reverse(name, kwargs=arguments))

        assert response.status_code == 405, f"GET {route} ({name}) got {response.status_code}"


def test_api_routes_bad_parameters(superuser_client):
    prober = Prober(superuser_client, api=True)

    for offset, target in enumerate(API_TARGETS):
        for probe in _target_probes(target, api=True, offset=offset):
            prober.send(probe)

    prober.report("API")
    assert prober.routes == {target.name for target in API_TARGETS}
    _assert_no_failures(prober)


def test_page_routes_bad_parameters(superuser_client):
    prober = Prober(superuser_client)

    for offset, target in enumerate(PAGE_TARGETS):
        for probe in _target_probes(target, api=False, offset=offset):
            prober.send(probe)

    prober.report("pages")
    assert prober.routes == {target.name for target in PAGE_TARGETS}
    _assert_no_failures(prober)


def test_admin_changelists_bad_parameters(superuser_client):
    prober = Prober(superuser_client)
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(username="admin")

    for offset, model_admin in enumerate(admin.site._registry.values()):
        for probe in _admin_probes(model_admin, request, offset):
            prober.send(probe)
    for offset, (name, params) in enumerate(ADMIN_PAGES):
        path = reverse(name)
        prober.send(Probe(name, path, "", frozenset({200})))
        for probe in _parameter_probes(
            name,
            path,
            params,
            offset=offset,
            per_parameter=ADMIN_VALUES_PER_PARAMETER,
            rule_for=lambda kind: Rule(frozenset({200, 400})),
        ):
            prober.send(probe)

    prober.report("admin")
    assert len(prober.routes) == len(admin.site._registry) + len(ADMIN_PAGES)
    _assert_no_failures(prober)
