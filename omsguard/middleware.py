"""Middleware of OMS Guard: database outages, and the shorter chain of webhook requests.

DatabaseUnavailableMiddleware returns 503 with Retry-After, not a 500 with a stack trace,
while the database is unreachable.

Only connection-level failures count: the server refused or dropped the connection, is
starting or shutting down, has no connection slot left, or (SQLite) the file is locked or
cannot be opened. Any other OperationalError is a fault in the query or the schema and
stays a 500, so a 503 never hides a bug. is_database_unavailable() contains the rule.

Django (5.2) converts an exception into a response at every middleware layer
(convert_exception_to_response), so, unless DEBUG_PROPAGATE_EXCEPTIONS is on, no exception
reaches an outer middleware's `__call__` and a try/except around get_response catches
nothing. The error is caught at two points:

- process_exception: raised by a view, by DRF (its exception handler returns None for
  database errors, so DRF raises them again), while rendering a template response, or by a
  lazy lookup the view triggers (request.user, request.session).
- got_request_exception: raised inside another middleware (the session save after the view,
  for example). Django has already made its 500 by then. The signal receiver marks the
  request, and __call__, placed right after SecurityMiddleware, replaces that 500 with the
  503. NOTE: on this path Django has also logged its own "Internal Server Error" record
  with the traceback, beside this module's line.

A streaming response whose iterator loses the database mid-body cannot be changed, because
the status line has already been sent.

WebhookMiddlewareChain sends requests under /webhooks/ through a shorter chain, without the
session, CSRF, authentication, messages, htmx, axes and static-file middleware, which a
webhook view never uses (see WEBHOOK_MIDDLEWARE). ApiTokenMiddlewareChain does the same for
requests under /api/ that authenticate with an API token (see API_TOKEN_MIDDLEWARE).
"""

import logging
import sqlite3
import sys
from collections.abc import Callable

import psycopg
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.core.signals import got_request_exception
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from django_prometheus.middleware import PrometheusAfterMiddleware
from django_prometheus.utils import Time, TimeSince
from rest_framework import HTTP_HEADER_ENCODING

from omsguard.celery import connections_note_healthy_use, health_check_skip_if_just_used

logger = logging.getLogger(__name__)

# PostgreSQL SQLSTATEs of a server that cannot serve the connection now (not a query fault):
# class 08 "connection exception", 53300 too_many_connections, and 57P01 admin_shutdown to
# 57P05 idle_session_timeout (57P03 cannot_connect_now: starting up or shutting down).
POSTGRESQL_CONNECTION_SQLSTATE_CLASS = "08"
POSTGRESQL_UNAVAILABLE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03", "57P04", "57P05"})
# SQLite primary result codes: SQLITE_BUSY ("database is locked"), SQLITE_LOCKED,
# SQLITE_IOERR and SQLITE_CANTOPEN. Extended codes carry the primary one in the low byte.
SQLITE_UNAVAILABLE_CODES = frozenset({5, 6, 10, 14})
SQLITE_PRIMARY_CODE_MASK = 0xFF

# Integrations call these paths, so their 503 is JSON whatever the Accept header contains.
JSON_PATH_PREFIXES = ("/api/", "/webhooks/")
ERROR_CODE = "database_unavailable"
TEMPLATE_NAME = "503.html"
# The request attribute where the got_request_exception receiver leaves the error.
FAILED_REQUEST_ATTRIBUTE = "_omsguard_database_unavailable"


class DatabaseUnavailableMiddleware:
    """Turn a lost database connection into 503 with Retry-After (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)

        error = getattr(request, FAILED_REQUEST_ATTRIBUTE, None)
        if error is not None and response.status_code == 500:
            return database_unavailable_response(request, error)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_unavailable(exception):
            return None
        return database_unavailable_response(request, exception)


def is_database_unavailable(error: BaseException | None) -> bool:
    """Tell whether `error` means the database cannot be reached now, not that a query is wrong.

    Judges the driver's exception, which Django keeps as __cause__ of its own DatabaseError.
    psycopg: an OperationalError without a SQLSTATE (refused, dropped, timed out: the server
    sent no error) or with one of POSTGRESQL_UNAVAILABLE_SQLSTATES or class 08. So a
    statement timeout (57014), a deadlock (40P01) or NOWAIT lock failure (55P03) stays a 500.
    sqlite3: SQLITE_UNAVAILABLE_CODES; "no such table" or "no such column" stays a 500.
    """
    driver_error = error.__cause__ if isinstance(error, DatabaseError) else error

    if isinstance(driver_error, psycopg.OperationalError):
        sqlstate = driver_error.sqlstate
        return (
            sqlstate is None
            or sqlstate.startswith(POSTGRESQL_CONNECTION_SQLSTATE_CLASS)
            or sqlstate in POSTGRESQL_UNAVAILABLE_SQLSTATES
        )
    if isinstance(driver_error, sqlite3.OperationalError):
        code = getattr(driver_error, "sqlite_errorcode", 0)
        return (code & SQLITE_PRIMARY_CODE_MASK) in SQLITE_UNAVAILABLE_CODES
    return False


def database_unavailable_response(request: HttpRequest, error: BaseException) -> HttpResponse:
    """Log the failure and build the 503: JSON for integrations, a static page for browsers.

    The page is rendered without the request, so no context processor runs and nothing
    queries the database (the user, messages) while it is down.
    """
    seconds = settings.OMSGUARD_DB_RETRY_AFTER_SECONDS
    _log_unavailable(request, error, seconds)

    if _wants_json(request):
        message = f"The database is unavailable. Try again in {seconds} seconds."
        response: HttpResponse = JsonResponse(
            {"error": {"code": ERROR_CODE, "message": message, "fields": {}}}, status=503
        )
    else:
        response = HttpResponse(
            render_to_string(TEMPLATE_NAME, {"retry_after": seconds}),
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(seconds)
    # A cache or proxy must not keep serving the outage page once the database is back.
    response["Cache-Control"] = "no-store"
    # Django would also log "Service Unavailable: <path>". Its log_response sets and reads
    # this flag (Django 5.2), so setting it keeps the record to the line above, without the path.
    response._has_been_logged = True
    return response


def _wants_json(request: HttpRequest) -> bool:
    if request.path_info.startswith(JSON_PATH_PREFIXES):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _log_unavailable(request: HttpRequest, error: BaseException, seconds: int) -> None:
    # The driver's message names the database host, port or file, so only its class and
    # SQLSTATE (or SQLite error name) are logged, and the view name instead of the path,
    # which may carry a token.
    driver_error = error.__cause__ if isinstance(error, DatabaseError) else error
    match = request.resolver_match
    logger.error(
        "database unavailable, returned 503",
        extra={
            "method": request.method,
            "view": match.view_name if match is not None else "",
            "error_class": type(driver_error).__name__,
            "sqlstate": getattr(driver_error, "sqlstate", None)
            or getattr(driver_error, "sqlite_errorname", None),
            "retry_after": seconds,
        },
    )


def _remember_unavailable_database(
    sender: object, request: HttpRequest | None = None, **kwargs
) -> None:
    # Django sends this signal inside its `except` block, so sys.exc_info() is the error.
    error = sys.exc_info()[1]
    if request is not None and is_database_unavailable(error):
        setattr(request, FAILED_REQUEST_ATTRIBUTE, error)


got_request_exception.connect(
    _remember_unavailable_database, dispatch_uid="omsguard.middleware.database_unavailable"
)


# --- Webhook requests -------------------------------------------------------------------------

WEBHOOK_PATH_PREFIX = "/webhooks/"
# The middleware a webhook request runs after WebhookMiddlewareChain, in MIDDLEWARE's order.
# Left out: WhiteNoise (it serves STATIC_URL only), sessions, CSRF (every webhook view is
# csrf_exempt), authentication, messages, htmx and axes (login lockouts). A webhook view reads
# none of them, and unused, they add no header to its response. Kept: the 503 on a lost
# database, CommonMiddleware (Content-Length, the trailing-slash redirect), X-Frame-Options,
# the Content-Security-Policy and the Prometheus response metrics (the same metrics as
# django-prometheus's PrometheusAfterMiddleware records). The middleware before
# WebhookMiddlewareChain in MIDDLEWARE (metrics, SecurityMiddleware's headers, the NUL check)
# run for every request.
WEBHOOK_MIDDLEWARE = (
    "omsguard.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "omsguard.middleware.SitePolicyCSPMiddleware",
    "omsguard.middleware.PrometheusAfterMetaMiddleware",
)


class WebhookMiddlewareChain:
    """Send requests under /webhooks/ through WEBHOOK_MIDDLEWARE instead of the rest of MIDDLEWARE.

    With this chain and SitePolicyCSPMiddleware, a signed Shopify webhook acknowledgement
    makes about 430 fewer Python function calls (cProfile, Django 5.2).

    A webhook request also leaves out Django's health check query (SELECT 1) on an open
    connection when the previous webhook request of this thread ended without a database
    error on it less than omsguard.celery.HEALTH_CHECK_SKIP_SECONDS earlier. That takes one of
    the two PostgreSQL round trips out of an acknowledgement in a steady stream of webhooks.
    A connection that broke in that time fails the request's first query, so the response is
    a 503 with Retry-After. Django closes that connection after the request.
    NOTE: the previous request need not have used the connection (a 429 or 404 does not), so
    a steady stream of such requests keeps the check off. The first request that then finds
    the connection broken gets the 503.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.webhook_chain = _MiddlewareChainHandler(WEBHOOK_MIDDLEWARE).chain

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(WEBHOOK_PATH_PREFIX):
            health_check_skip_if_just_used()
            response = self.webhook_chain(request)
            connections_note_healthy_use()
            return response
        return self.get_response(request)


# --- Token-authenticated API requests ---------------------------------------------------------

API_PATH_PREFIX = "/api/"
# The middleware a token request under /api/ runs after ApiTokenMiddlewareChain: the same as a
# webhook's. DRF's TokenAuthentication either authenticates or rejects (401) every request whose
# Authorization header starts with its keyword, so SessionAuthentication never reads the
# session of such a request. Every DRF view is csrf_exempt and enforces CSRF only through
# SessionAuthentication. Left out as for webhooks: WhiteNoise, sessions, CSRF, authentication
# (DRF sets request.user), messages, htmx and axes (token checks never call authenticate()).
# The Content-Security-Policy stays, because /api/docs/ is an HTML page.
API_TOKEN_MIDDLEWARE = WEBHOOK_MIDDLEWARE


class ApiTokenMiddlewareChain:
    """Send requests under /api/ with `Authorization: Token ...` through API_TOKEN_MIDDLEWARE.

    Any other request, such as a browser's with a session cookie and no token, runs the rest of
    MIDDLEWARE. The shorter chain is used only while DRF's first default authentication class
    is a TokenAuthentication, because only then does the token header decide the user.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.keyword = _token_keyword()
        self.api_chain = _MiddlewareChainHandler(API_TOKEN_MIDDLEWARE).chain

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            self.keyword is not None
            and request.path_info.startswith(API_PATH_PREFIX)
            and _authorization_keyword(request) == self.keyword
        ):
            return self.api_chain(request)
        return self.get_response(request)


def _token_keyword() -> bytes | None:
    """Return the lower-case keyword of DRF's first default authentication class, if a token one."""
    # Imported here: DRF's settings import the authentication classes, which need the apps.
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.settings import api_settings

    classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
    if not classes or not issubclass(classes[0], TokenAuthentication):
        return None
    return classes[0].keyword.lower().encode()


def _authorization_keyword(request: HttpRequest) -> bytes | None:
    """Return the first word of the Authorization header in lower case, split as DRF splits it.

    As DRF's get_authorization_header (3.x) does, the header is split as ISO-8859-1 bytes,
    so only ASCII whitespace separates words.
    """
    header = request.META.get("HTTP_AUTHORIZATION", b"")
    if isinstance(header, str):
        header = header.encode(HTTP_HEADER_ENCODING)
    words = header.split(None, 1)
    return words[0].lower() if words else None


# Label combinations whose children PrometheusAfterMetaMiddleware keeps. The method label of the
# latency metric is the raw request method, which a client chooses. Past this many
# combinations the children are looked up through labels() every time, so the cache stays small.
LABELLED_CHILDREN_LIMIT = 256


class PrometheusAfterMetaMiddleware(PrometheusAfterMiddleware):
    """django-prometheus's PrometheusAfterMiddleware with cheaper lookups and the same metrics.

    django-prometheus (2.5) reads two headers through request.headers, which parses every
    header of the request on first use (about 90 Python function calls per webhook), and
    calls labels() seven times per request, about 12 calls each (prometheus_client 0.26). This
    reads the headers from request.META and keeps the labelled child metrics per combination of
    label values, so each child is looked up once. The metrics, their labels and their values
    are the same.

    NOTE: a child removed with remove() or clear() on one of these metrics stays in this cache
    and keeps counting unseen by the registry. OMS Guard never removes them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._children: dict[tuple, tuple] = {}

    def _labelled(self, key: tuple, build: Callable[[], tuple]) -> tuple:
        children = self._children.get(key)
        if children is None:
            children = build()
            if len(self._children) < LABELLED_CHILDREN_LIMIT:
                self._children[key] = children
        return children

    def process_request(self, request: HttpRequest) -> None:
        metrics = self.metrics
        method = self._method(request)
        transport = self._transport(request)
        by_method, by_transport = self._labelled(
            ("request", method, transport),
            lambda: (
                metrics.requests_by_method.labels(method=method),
                metrics.requests_by_transport.labels(transport=transport),
            ),
        )
        by_method.inc()
        by_transport.inc()

        # As django-prometheus does, in place of the removed Request.is_ajax().
        if request.META.get("HTTP_X_REQUESTED_WITH") == "XMLHttpRequest":
            metrics.requests_ajax.inc()

        content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        metrics.requests_body_bytes.observe(content_length)
        request.prometheus_after_middleware_event = Time()

    def process_view(self, request: HttpRequest, view_func, *view_args, **view_kwargs) -> None:
        if not hasattr(request, "resolver_match"):
            return
        name = request.resolver_match.view_name or "<unnamed view>"
        method = self._method(request)
        transport = self._transport(request)
        (child,) = self._labelled(
            ("view", name, transport, method),
            lambda: (
                self.metrics.requests_by_view_transport_method.labels(
                    view=name, transport=transport, method=method
                ),
            ),
        )
        child.inc()

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        metrics = self.metrics
        method = self._method(request)
        name = self._get_view_name(request)
        status = str(response.status_code)
        charset = str(response.charset) if hasattr(response, "charset") else None
        timed = hasattr(request, "prometheus_after_middleware_event")

        # The latency metric takes the raw method, not the checked one, as django-prometheus does.
        raw_method = request.method
        by_status, by_status_view_method, by_charset, latency = self._labelled(
            ("response", method, name, status, charset, raw_method if timed else None),
            lambda: (
                metrics.responses_by_status.labels(status=status),
                metrics.responses_by_status_view_method.labels(
                    status=status, view=name, method=method
                ),
                None if charset is None else metrics.responses_by_charset.labels(charset=charset),
                metrics.requests_latency_by_view_method.labels(view=name, method=raw_method)
                if timed
                else None,
            ),
        )

        by_status.inc()
        by_status_view_method.inc()
        if by_charset is not None:
            by_charset.inc()
        if getattr(response, "streaming", False):
            metrics.responses_streaming.inc()
        if hasattr(response, "content"):
            metrics.responses_body_bytes.observe(len(response.content))
        if latency is not None:
            latency.observe(TimeSince(request.prometheus_after_middleware_event))
        else:
            metrics.requests_unknown_latency.inc()
        return response


class _MiddlewareChainHandler(BaseHandler):
    """A Django request handler over its own list of middleware instead of settings.MIDDLEWARE.

    It builds the chain as BaseHandler.load_middleware does (Django 5.2), sync only: resolving
    the URL, process_view and process_exception hooks and the view call are Django's own.
    The outer handler still sets the urlconf, logs error responses and closes the response.
    """

    def __init__(self, middleware_paths: tuple[str, ...]) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for middleware_path in reversed(middleware_paths):
            try:
                instance = import_string(middleware_path)(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(instance, "process_view"):
                self._view_middleware.insert(0, instance.process_view)
            if hasattr(instance, "process_template_response"):
                self._template_response_middleware.append(instance.process_template_response)
            if hasattr(instance, "process_exception"):
                self._exception_middleware.append(instance.process_exception)
            handler = convert_exception_to_response(instance)
        self.chain = handler


# Response attributes that django-csp's decorators set. A response with any of them gets its
# policy built by django-csp itself.
CSP_RESPONSE_ATTRIBUTES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)
# (settings object, header value) of the last site-wide policy built, by report-only flag.
_site_policies: dict[bool, tuple[object, str]] = {}


class SitePolicyCSPMiddleware(CSPMiddleware):
    """django-csp's middleware that builds the site-wide policy once, not for every response.

    django-csp (4.0) builds the header from the settings on every response, about 330 Python
    function calls. A response without a nonce or a per-view policy gets the site-wide one,
    so it is built once and rebuilt when the settings object is replaced.

    NOTE: a change made inside the CONTENT_SECURITY_POLICY dict in place, without replacing
    it, is not seen. Settings are not changed that way outside tests.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        customised = getattr(request, "_csp_nonce", None) is not None or any(
            getattr(response, name, None) is not None for name in CSP_RESPONSE_ATTRIBUTES
        )
        if customised:
            return super().process_response(request, response)
        # django-csp leaves Django's debug pages without a policy.
        if response.status_code in (404, 500) and settings.DEBUG:
            return response

        _policy_header_set(request, response, report_only=False)
        _policy_header_set(request, response, report_only=True)
        # As django-csp does: a nonce asked for after this point raises instead of silently
        # missing from the header.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


def _policy_header_set(
    request: HttpRequest, response: HttpResponseBase, *, report_only: bool
) -> None:
    """Set one CSP header as django-csp's process_response does, unless exempt or excluded."""
    setting = "CONTENT_SECURITY_POLICY_REPORT_ONLY" if report_only else "CONTENT_SECURITY_POLICY"
    header = HEADER_REPORT_ONLY if report_only else HEADER
    exempt_attribute = "_csp_exempt_ro" if report_only else "_csp_exempt"
    config = getattr(settings, setting, None)

    cached = _site_policies.get(report_only)
    if cached is None or cached[0] is not config:
        cached = (config, build_policy(report_only=report_only))
        _site_policies[report_only] = cached
    policy = cached[1]
    if not policy or header in response or getattr(response, exempt_attribute, False) is not False:
        return
    prefixes = (config or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
    if not request.path_info.startswith(tuple(prefixes)):
        response[header] = policy
