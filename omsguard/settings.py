"""
Settings for OMS Guard, read from the environment.

DATABASE_URL   PostgreSQL (postgres://user@host:port/name); a SQLite file under var/ when unset.
REDIS_URL      Celery broker and cache; when unset, Celery runs tasks in-process (eagerly)
               and the cache is per-process memory.
SECRET_KEY     Required when DEBUG is off.
DEBUG          "1"/"true" for development; off by default.
ALLOWED_HOSTS  Comma-separated host names; defaults to local addresses.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from omsguard.queues import queue_names

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}.") from error


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # pytest (8.2 and later) sets PYTEST_VERSION, so the test suite needs no key of its own.
    if not DEBUG and "PYTEST_VERSION" not in os.environ:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY, or DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    # django.contrib.admin, with a site whose change lists reject out-of-range date filters.
    "omsguard.admin_dates.BoundedDatesAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "catalog",
    "orders",
    "guardrails",
    "reviews",
    "monitoring",
    "inventory",
    "csp",
    "axes",
]

MIDDLEWARE = [
    # Request counts and latencies for /metrics; the pair wraps every other middleware.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # 503 with Retry-After while the database is unreachable; outside every middleware that
    # may query it (sessions, auth), so it also replaces the 500 they would produce.
    "omsguard.middleware.DatabaseUnavailableMiddleware",
    # Requests under /webhooks/ leave this list here for a shorter chain without sessions,
    # CSRF, auth, messages, htmx and axes (WEBHOOK_MIDDLEWARE in omsguard/middleware.py).
    "omsguard.middleware.WebhookMiddlewareChain",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the 429 page before the
    # response passes back through the rest, so the metrics count the 429.
    "axes.middleware.AxesMiddleware",
]

# The axes backend only rejects logins while locked out; ModelBackend checks the password.
# ModelBackend reads a user's own and group permissions with two queries on the first check
# of each request; SingleQueryModelBackend reads both with one and otherwise works the same.
# Sessions store the backend that logged them in, so sessions started under ModelBackend
# ended once at the switch (docs/security/roles.md).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "omsguard.auth_backends.SingleQueryModelBackend",
]

ROOT_URLCONF = "omsguard.urls"
WSGI_APPLICATION = "omsguard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL when DATABASE_URL is set, otherwise a local SQLite file.
VAR_DIR = Path(os.environ.get("OMSGUARD_VAR_DIR", BASE_DIR / "var"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
        )
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "omsguard.sqlite3",
            # A busy timeout lets the demo's web process and its in-process tasks share the
            # file without "database is locked" errors under light concurrency.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }

# A PostgreSQL read replica for the dashboards' heavy reads (docs/deploy.md). Only code that
# asks for omsguard.databases.reporting_database() reads from it; everything else, and every
# write, uses the primary. Tests read the primary through it (TEST MIRROR).
OMSGUARD_REPLICA_DATABASE_URL = os.environ.get("OMSGUARD_REPLICA_DATABASE_URL", "")
if DATABASE_URL and OMSGUARD_REPLICA_DATABASE_URL:
    DATABASES["replica"] = dj_database_url.parse(
        OMSGUARD_REPLICA_DATABASE_URL,
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

# Behind PgBouncer in transaction pooling mode, server-side cursors (QuerySet.iterator) break;
# DB_DISABLE_SERVER_SIDE_CURSORS=1 turns them off (docs/deploy.md).
if DATABASE_URL and env_bool("DB_DISABLE_SERVER_SIDE_CURSORS", False):
    for _alias in DATABASES.values():
        _alias["DISABLE_SERVER_SIDE_CURSORS"] = True

# Prepared statements: psycopg binds parameters on the server and prepares a statement after
# its fifth run on a connection, so PostgreSQL parses and plans it once per connection instead
# of on every run. On the decisions API this halved PostgreSQL's CPU per decision
# (docs/performance.md). DB_PREPARED_STATEMENTS=0 turns both off: needed behind PgBouncer in
# transaction pooling mode before 1.21, or without its max_prepared_statements (docs/deploy.md).
if DATABASE_URL and env_bool("DB_PREPARED_STATEMENTS", True):
    for _alias in DATABASES.values():
        _alias.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: Celery broker and cache. Without it tasks run eagerly in the calling process.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "omsguard",
            # A Redis that accepts connections but hangs must not hang requests: the rate
            # limiter lets requests through when the cache fails, but only once it fails.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    # A deployment may run Celery on RabbitMQ (amqp://...) and keep Redis for the cache.
    CELERY_BROKER_URL = os.environ.get("OMSGUARD_BROKER_URL") or REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # Eager tasks need no broker, but Celery still opens a connection to read its settings,
    # and "memory://" without a host logs a kombu warning on every such connection.
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_TASK_ALWAYS_EAGER = True

CELERY_TASK_EAGER_PROPAGATES = False
# autodiscover_tasks() finds only each app's top-level `tasks` module; these live deeper.
CELERY_IMPORTS = [
    "guardrails.recommenders.tasks",
    "reviews.confirmation_tasks",
    "monitoring.notification_tasks",
]
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("OMSGUARD_CELERY_QUEUE", "omsguard")
# Tasks go to four queues named after this namespace: omsguard.ingest, .decisions, .reviews and
# .monitoring (omsguard/queues.py). A worker started without -Q consumes all four.
CELERY_TASK_ROUTES = ("omsguard.queues.route_task",)
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name) for name in queue_names(CELERY_TASK_DEFAULT_QUEUE)
]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django support closes the database connection before and after every task unless
# this is set, so each task opened a new PostgreSQL connection (a new server process, several
# milliseconds). Now it closes them every this many tasks, and omsguard/celery.py applies
# CONN_MAX_AGE and the health check before each task, as Django does before each request.
CELERY_DB_REUSE_MAX = env_int("OMSGUARD_CELERY_DB_REUSE_MAX", 1000)
# Order processing commits without waiting for the WAL flush when its transaction queued no
# on_commit work. A PostgreSQL crash right after such a commit may undo the processing, so the
# sweep processes the delivery again (docs/reliability.md, "Processing commits"). 0 turns it off.
OMSGUARD_PROCESSING_ASYNC_COMMIT = env_bool("OMSGUARD_PROCESSING_ASYNC_COMMIT", True)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker that is down must not hang a webhook request: fail the publish fast and let the
# delivery stay recorded as "received" for the sweep. kombu (5.7) otherwise retries a refused
# connection for broker_connection_timeout (4 s) with 2 s sleeps, about 6 s per publish;
# "max_retries": 0 makes it one attempt, bounded by socket_connect_timeout. The worker's own
# connection loop passes its retry limits explicitly, so it still reconnects as before.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "max_retries": 0,
}
# Seconds before Redis hands an unacknowledged task (its worker died) to another worker; kombu
# defaults to 3600. A task running longer than this, or waiting for its retry countdown that
# long, is delivered a second time (docs/ingestion.md). Unset keeps kombu's default.
OMSGUARD_BROKER_VISIBILITY_TIMEOUT = env_int("OMSGUARD_BROKER_VISIBILITY_TIMEOUT", 0)
if OMSGUARD_BROKER_VISIBILITY_TIMEOUT > 0:
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "visibility_timeout": OMSGUARD_BROKER_VISIBILITY_TIMEOUT,
        # kombu scans for expired tasks every interval * throttle seconds (10 * 10 by default),
        # which would dwarf a short timeout.
        "unacked_restore_interval": min(OMSGUARD_BROKER_VISIBILITY_TIMEOUT, 10),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_PUBLISH_RETRY = False
# Keep Django's LOGGING (JSON lines) in the worker instead of Celery's own plain format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Periodic jobs are rows in the admin under Periodic tasks (django-celery-beat), created by
# the data migration monitoring/migrations/0005_periodic_tasks.py. Beat reads them from the
# database, so an interval changed in the admin survives restarts. Keep
# CELERY_BEAT_SCHEDULE empty: beat would write its entries over those rows on every start.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict = {}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve static files from the finders when no collectstatic has run (development, tests).
WHITENOISE_USE_FINDERS = DEBUG or env_bool("WHITENOISE_USE_FINDERS", False)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

CSRF_FAILURE_VIEW = "reviews.views.csrf_failure"

# Security: strict by default, relaxed only by DEBUG or explicit variables.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers check /healthz over plain HTTP and often cannot add X-Forwarded-Proto.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Joining the browsers' HSTS preload list is hard to undo and binds every subdomain, so it is
# the domain owner's opt-in (SECURE_HSTS_PRELOAD=1), and the check that nags about it is off.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- Content-Security-Policy and login throttling (docs/security/headers-and-login.md) ---
# Pages load scripts, styles, images, fonts and data from this site only, and no page may be
# framed. Neither 'unsafe-inline' nor 'unsafe-eval' is allowed, so templates carry no inline
# <script>, <style>, style="" or on* attributes, and htmx runs with allowEval off
# (templates/base.html). Only the API docs view adds a source: data: images for Swagger UI's
# icons (omsguard/api_docs.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Login throttling (django-axes), on the login page and the admin login alike. After
# AXES_FAILURE_LIMIT failed logins for one user name from one client address, that pair is
# locked until AXES_COOLOFF_TIME has passed since its last failure. The pair is locked, not the
# user name alone, so an attacker elsewhere cannot lock a colleague out; and not the address
# alone, because an office behind one NAT address shares it.
# NOTE: one address may still try AXES_FAILURE_LIMIT passwords per cool-off on each of many
# user names, and many addresses may each try that many on one user name. Limiting those is
# left to the reverse proxy or a web application firewall.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A login tried during the lockout, even with the right password, does not restart the
# cool-off, so the lockout page can name the minute the lockout ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "omsguard.login_throttle.lockout_response"
# The client address comes from the same function as the API rate limits' address, so behind
# reverse proxies set OMSGUARD_RATE_LIMIT_PROXY_COUNT: otherwise every login shares the
# proxy's address and the lock falls back to the user name alone.
AXES_CLIENT_IP_CALLABLE = "omsguard.login_throttle.client_ip_address"
# Axes logs a failed login with its user name and path only: the client address and the CSRF
# token are masked, and axes always masks the password.
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["ip_address", "csrfmiddlewaretoken"]
# No AccessLog row per successful login: auth.User.last_login keeps the latest one, and a row
# per login, with its address, would grow without limit. Failed-attempt rows are deleted by
# axes at the next login attempt once their cool-off has passed.
AXES_DISABLE_ACCESS_LOG = True
# --- End of Content-Security-Policy and login throttling ---

# Webhook bodies above this size are rejected with 413 before any parsing.
OMSGUARD_WEBHOOK_MAX_BYTES = env_int("OMSGUARD_WEBHOOK_MAX_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(OMSGUARD_WEBHOOK_MAX_BYTES, 2_621_440)

# How many candidate SKUs the unmapped-SKU matcher proposes, and the lowest similarity (0-100)
# a candidate needs to be shown.
OMSGUARD_SKU_CANDIDATES = env_int("OMSGUARD_SKU_CANDIDATES", 5)
OMSGUARD_SKU_CANDIDATE_MIN_SCORE = env_int("OMSGUARD_SKU_CANDIDATE_MIN_SCORE", 50)

# Shipping addresses scoring below this (0 to 1) hold the order for an address review.
OMSGUARD_ADDRESS_MIN_SCORE = os.environ.get("OMSGUARD_ADDRESS_MIN_SCORE", "0.80")

# Customer address confirmation emails. EMAIL_BACKEND defaults to the console (the message is
# printed) under DEBUG and to SMTP otherwise. The SMTP server comes from EMAIL_HOST, EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS or EMAIL_USE_SSL. OMSGUARD_PUBLIC_URL is
# the address customers reach this site at, for the links in those emails. A periodic job
# tries a failed send again, up to OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS attempts in all.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
# Seconds an SMTP connection may block a worker before the send counts as failed.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "OMS Guard <orders@localhost>")
OMSGUARD_PUBLIC_URL = os.environ.get("OMSGUARD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS = env_int(
    "OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS", 10
)

# Uploaded files (SKU imports). They are private: nothing serves MEDIA_ROOT over HTTP. The web
# process and the Celery worker must see the same directory.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"
# SKU imports: rows validated and written per chunk (progress is reported per chunk), the most
# rows one file may have, the largest upload in bytes, and how long a running job may show no
# progress before a redelivered task takes it over.
OMSGUARD_IMPORT_CHUNK_SIZE = env_int("OMSGUARD_IMPORT_CHUNK_SIZE", 1000)
OMSGUARD_IMPORT_MAX_ROWS = env_int("OMSGUARD_IMPORT_MAX_ROWS", 200_000)
OMSGUARD_IMPORT_MAX_BYTES = env_int("OMSGUARD_IMPORT_MAX_BYTES", 50 * 1024 * 1024)
OMSGUARD_IMPORT_STALE_SECONDS = env_int("OMSGUARD_IMPORT_STALE_SECONDS", 900)

# A stock snapshot older than this many seconds is stale, and a reservation made on it gets a
# "stale_stock" flag on its order.
OMSGUARD_STOCK_TTL_SECONDS = env_int("OMSGUARD_STOCK_TTL_SECONDS", 300)
# The maximum number of stock events in one POST to /api/v1/stock-events/.
OMSGUARD_STOCK_EVENTS_MAX_BATCH = env_int("OMSGUARD_STOCK_EVENTS_MAX_BATCH", 500)

# Ingestion (docs/ingestion.md). The sweep queues again deliveries still unprocessed this many
# seconds after they were recorded. POST /api/v1/orders/ rejects bodies above the byte limit.
OMSGUARD_SWEEP_AFTER_SECONDS = env_int("OMSGUARD_SWEEP_AFTER_SECONDS", 120)
OMSGUARD_API_ORDER_MAX_BYTES = env_int("OMSGUARD_API_ORDER_MAX_BYTES", 1024 * 1024)
# --- Delivery retries (docs/ingestion.md)
# The longest wait, in seconds, before process_delivery retries a database error. The waits
# grow exponentially (with full jitter) up to this value, and after the task's MAX_RETRIES
# retries the delivery goes to the dead letter state. Keep it below
# OMSGUARD_BROKER_VISIBILITY_TIMEOUT when that is set, so a waiting retry is not redelivered.
OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS = env_int(
    "OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS", 300
)
if OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS < 0:
    raise ImproperlyConfigured(
        "OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS must be 0 or more, "
        f"got {OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS}."
    )
# --- End of delivery retries.

# --- Database outages (omsguard/middleware.py) ---
# A request that cannot reach the database gets 503 with this Retry-After, in seconds.
OMSGUARD_DB_RETRY_AFTER_SECONDS = env_int("OMSGUARD_DB_RETRY_AFTER_SECONDS", 5)
if OMSGUARD_DB_RETRY_AFTER_SECONDS < 1:
    raise ImproperlyConfigured(
        "OMSGUARD_DB_RETRY_AFTER_SECONDS must be at least 1, "
        f"got {OMSGUARD_DB_RETRY_AFTER_SECONDS}."
    )

# --- Circuit breaker checks (guardrails/tasks.py) ---
# A decision's breaker check starts this many seconds after the decision that queued it. The
# decisions of the same action, channel and model committed meanwhile are counted by that
# check instead of queueing their own, so a busy API runs about one check per scope per this
# many seconds instead of one after another. 0 starts each check as soon as a worker is free.
OMSGUARD_BREAKER_CHECK_DELAY_SECONDS = env_int("OMSGUARD_BREAKER_CHECK_DELAY_SECONDS", 1)
if not 0 <= OMSGUARD_BREAKER_CHECK_DELAY_SECONDS <= 30:
    raise ImproperlyConfigured(
        "OMSGUARD_BREAKER_CHECK_DELAY_SECONDS must be from 0 to 30, "
        f"got {OMSGUARD_BREAKER_CHECK_DELAY_SECONDS}."
    )
# Seconds a breaker check reuses a scope's baseline counts (the days before the window)
# before reading them again; 0 reads them on every check (guardrails/breaker_stats.py).
OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS = env_int("OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS", 300)
if not 0 <= OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS <= 3600:
    raise ImproperlyConfigured(
        "OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS must be from 0 to 3600, "
        f"got {OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS}."
    )

# Orders above this total, in OMSGUARD_ESCALATION_CURRENCY, get an "order_value" flag. A
# destination country the channel has not shipped to in its last orders gets an
# "unusual_destination" flag once the channel has OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS orders.
OMSGUARD_ESCALATION_ORDER_VALUE = os.environ.get("OMSGUARD_ESCALATION_ORDER_VALUE", "1000")
OMSGUARD_ESCALATION_CURRENCY = os.environ.get("OMSGUARD_ESCALATION_CURRENCY", "USD")
OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS = env_int("OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS", 20)
# Built-in recommenders (docs/guardrails/recommenders.md). The two class settings name the
# recommender by dotted path; any class with the same `recommend` method can replace them.
OMSGUARD_SUBSTITUTION_RECOMMENDER = os.environ.get(
    "OMSGUARD_SUBSTITUTION_RECOMMENDER",
    "guardrails.recommenders.substitution.SubstitutionRecommender",
)
OMSGUARD_CARRIER_RECOMMENDER = os.environ.get(
    "OMSGUARD_CARRIER_RECOMMENDER", "guardrails.recommenders.carrier.CarrierRecommender"
)
# Substitution similarity: weights of title (rapidfuzz WRatio of normalised titles), variant
# attributes, same category and price band; they are normalised to sum 1. A candidate is in
# the price band when its price is within PRICE_BAND (0.20 = +-20 %) of the ordered price.
# MARGIN_WEIGHT adds the margin change (ordered cost minus substitute cost, over the ordered
# price, clipped to +-1) to the ranking score only, never to the confidence.
OMSGUARD_SUBSTITUTION_WEIGHTS = {"title": 0.5, "attributes": 0.2, "category": 0.15, "price": 0.15}
OMSGUARD_SUBSTITUTION_PRICE_BAND = "0.20"
OMSGUARD_SUBSTITUTION_MARGIN_WEIGHT = 0.05
OMSGUARD_SUBSTITUTION_MAX_CANDIDATES = env_int("OMSGUARD_SUBSTITUTION_MAX_CANDIDATES", 5)
# Propose a substitute automatically whenever an out-of-stock review item opens.
OMSGUARD_SUBSTITUTION_ON_STOCK_OUT = env_bool("OMSGUARD_SUBSTITUTION_ON_STOCK_OUT", True)
# Confidence prior: p = 1 / (1 + exp(-STEEPNESS * (similarity - MIDPOINT))), so similarity 0.70
# maps to 0.50, 0.90 to about 0.92 and 0.95 to about 0.95. Once a similarity bucket (tenths)
# has CALIBRATION_MIN_DECISIONS reviewed proposals, the prior counts as PRIOR_WEIGHT
# observations beside the accepted share of them.
OMSGUARD_SUBSTITUTION_PRIOR_MIDPOINT = 0.70
OMSGUARD_SUBSTITUTION_PRIOR_STEEPNESS = 12.0
OMSGUARD_SUBSTITUTION_CALIBRATION_MIN_DECISIONS = 20
OMSGUARD_SUBSTITUTION_CALIBRATION_PRIOR_WEIGHT = 10
# Carrier selection: weights of on-time reliability, SLA fit (transit days against the target
# of the order's service level) and cost (cheapest rate / this rate); normalised to sum 1.
OMSGUARD_CARRIER_WEIGHTS = {"reliability": 0.4, "sla": 0.35, "cost": 0.25}
OMSGUARD_CARRIER_TARGET_TRANSIT_DAYS = {"economy": 7, "ground": 5, "expedited": 2, "overnight": 1}
# A carrier rate change that would swap the recommended service on more than this share of the
# last RATE_SIGNOFF_DAYS days' orders of its lane waits for an ops manager's sign-off.
OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE = os.environ.get("OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE", "0.10")
OMSGUARD_CARRIER_RATE_SIGNOFF_DAYS = env_int("OMSGUARD_CARRIER_RATE_SIGNOFF_DAYS", 7)
# Test-only: seconds each delivery's processing sleeps while holding its lock, so the worker
# tests can kill a worker mid-task. Always 0 in production.
OMSGUARD_TEST_PROCESSING_DELAY_SECONDS = float(
    os.environ.get("OMSGUARD_TEST_PROCESSING_DELAY_SECONDS", "0")
)
# Bench-only: serve /bench/store-body/, the bare-view baseline of bench/ingest.py. It writes
# request bodies into a table the bench creates, without authentication, so keep it off.
OMSGUARD_BENCH_ENDPOINTS = env_bool("OMSGUARD_BENCH_ENDPOINTS", False)

# --- Rate limits and webhook freshness (docs/security/rate-limits.md, docs/security/webhooks.md)
# Each rate is "<limit>/<second|minute|hour|day>"; an empty value switches that limit off.
# WEBHOOK counts every request to one channel's webhook URL, API every request of one user (an
# API token belongs to one user), ANON the API requests without a user, per IP address. Load
# tests that send more than these raise them in the environment.
OMSGUARD_RATE_LIMIT_WEBHOOK = os.environ.get("OMSGUARD_RATE_LIMIT_WEBHOOK", "3000/minute")
OMSGUARD_RATE_LIMIT_API = os.environ.get("OMSGUARD_RATE_LIMIT_API", "1200/minute")
OMSGUARD_RATE_LIMIT_ANON = os.environ.get("OMSGUARD_RATE_LIMIT_ANON", "120/minute")
# Reverse proxies in front of the app that append the client's address to X-Forwarded-For.
# 0 counts anonymous requests by REMOTE_ADDR, so behind a proxy they all share its address.
OMSGUARD_RATE_LIMIT_PROXY_COUNT = env_int("OMSGUARD_RATE_LIMIT_PROXY_COUNT", 0)
# Prefix of the counters' cache keys; the test suite gives each test its own.
OMSGUARD_RATE_LIMIT_NAMESPACE = os.environ.get("OMSGUARD_RATE_LIMIT_NAMESPACE", "")
# A signed webhook whose own timestamp is older than MAX_AGE or further than MAX_FUTURE
# ahead of this server's clock is rejected (400 stale_delivery). Shopify retries for 4 hours
# and Square for 24, so 72 hours leaves a margin. MAX_AGE 0 switches the check off.
OMSGUARD_WEBHOOK_MAX_AGE_SECONDS = env_int("OMSGUARD_WEBHOOK_MAX_AGE_SECONDS", 72 * 3600)
OMSGUARD_WEBHOOK_MAX_FUTURE_SECONDS = env_int("OMSGUARD_WEBHOOK_MAX_FUTURE_SECONDS", 300)
# orders/apps.py checks these values at start-up, because parsing a rate here would import
# Django REST framework, which reads the settings before this module has finished.
# --- End of rate limits and webhook freshness.

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["omsguard.api.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "omsguard.api_parsers.JSONParser",
        # API fuzz: DRF's form parsers with a 400 for NUL characters, as the JSON parser.
        "omsguard.api_parsers.FormParser",
        "omsguard.api_parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "omsguard.api_filters.FilterBackend",
        "omsguard.api_filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["omsguard.ratelimit.ApiRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "omsguard.api.Pagination",
    "PAGE_SIZE": 50,
    # DRF's JSON renderer, which escapes a lone surrogate instead of failing on it (a 500).
    "DEFAULT_RENDERER_CLASSES": [
        "omsguard.api_renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Rejects a repeated ?format= with a 400, where DRF would use the last value.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "omsguard.query_params.ContentNegotiation",
    "EXCEPTION_HANDLER": "omsguard.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "OMS Guard API",
    "DESCRIPTION": (
        "Guardrails for AI agents in order management. Integrations authenticate with "
        "`Authorization: Token <key>` (create one with `manage.py add_api_token`)."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One schema name per choice set that several fields share.
    "ENUM_NAME_OVERRIDES": {
        "StockEventKindEnum": "inventory.models.StockEventKind",
        "StockEventOutcomeEnum": "inventory.models.StockEventOutcome",
        # API fuzz: the canonical order's state and a breaker's state share the field name.
        "BreakerStateEnum": "guardrails.models.BreakerState",
        "CanonicalOrderStateEnum": ["open", "cancelled", "incomplete"],
    },
    # --- API fuzz: every operation documents the error responses DRF may give, with the
    # one error body (omsguard/api_schema.py). The first hook is drf-spectacular's default.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "omsguard.api_schema.error_responses_add",
    ],
    # --- End of API fuzz.
}

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Monitoring. /metrics serves a request that carries "Authorization: Bearer
# OMSGUARD_METRICS_TOKEN", or one from an address in OMSGUARD_METRICS_ALLOWED_NETWORKS
# (comma-separated CIDRs). Any other request gets a 404. Without a token, only the networks count.
# The networks default to the local machine only under DEBUG. In production a reverse proxy
# on the same host makes every client's REMOTE_ADDR 127.0.0.1, so there the default is none
# and only the token opens /metrics.
OMSGUARD_METRICS_TOKEN = os.environ.get("OMSGUARD_METRICS_TOKEN", "")
OMSGUARD_METRICS_ALLOWED_NETWORKS = env_list(
    "OMSGUARD_METRICS_ALLOWED_NETWORKS", ["127.0.0.1/32", "::1/128"] if DEBUG else []
)
# The KPI rollup job recomputes this many hours back on each run, so facts that arrive late
# (a return dated yesterday) are counted. `manage.py rollup_kpis --days N` reaches further.
OMSGUARD_KPI_REFRESH_HOURS = env_int("OMSGUARD_KPI_REFRESH_HOURS", 48)
# Alert notifications: attempts per message before it is marked failed (backoff doubles).
OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS = env_int("OMSGUARD_ALERT_NOTIFY_MAX_ATTEMPTS", 6)
OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS = env_int("OMSGUARD_ALERT_NOTIFY_TIMEOUT_SECONDS", 10)
# Alert webhooks may not reach loopback, private, link-local (cloud metadata), multicast,
# reserved or other non-public addresses (monitoring/webhook_guard.py). To post to an
# internal chat server on purpose, list its networks as comma-separated CIDRs, such as
# "10.20.0.0/16,fd00:1::/64". Empty by default. An invalid entry stops startup.
OMSGUARD_NOTIFY_ALLOWED_NETWORKS = env_list("OMSGUARD_NOTIFY_ALLOWED_NETWORKS", [])

# --- Query parameters with a NUL character (omsguard/query_strings.py) ---
# PostgreSQL text cannot hold NUL, so a query string that carries one gets 400 naming the
# parameter before any view or admin changelist passes it to a query.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "omsguard.query_strings.NulQueryParameterMiddleware",
)
# --- End of query parameters with a NUL character ---

# --- Review queue counts (docs/reviews/queue-pages.md) ---
# The per-kind counts of the review queue pages read one index entry per open item. Once at
# least OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN items are open, the pages show counts cached for up
# to OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS and show their age. A decision made in the queue
# clears them at once. 0 seconds switches the cache off, so every page counts afresh.
OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS = env_int("OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS", 10)
OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN = env_int("OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN", 1000)
# --- End of review queue counts.

# --- API middleware chain ---
# Requests under /api/ with "Authorization: Token ..." leave MIDDLEWARE right after the webhook
# chain, for the same shorter chain (API_TOKEN_MIDDLEWARE in omsguard/middleware.py).
MIDDLEWARE.insert(
    MIDDLEWARE.index("omsguard.middleware.WebhookMiddlewareChain") + 1,
    "omsguard.middleware.ApiTokenMiddlewareChain",
)
# API tokens: the token's query also reads its user's permissions (omsguard/api_auth.py).
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "omsguard.api_auth.TokenPermissionsAuthentication",
    *REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"][1:],
]
# --- End of API middleware chain.
