"""Shared fixtures: users per role, a Shopify channel, and signed webhook posting."""

import importlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from omsguard.celery import app as celery_app
from orders.adapters import shopify

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SECRET = "test-secret & <> ; ünïcode"


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Tests talk plain HTTP to the test client; production keeps the redirect on.
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # The manifest storage needs collectstatic; tests serve static files from the finders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _rate_limit_namespace(settings):
    # Rate-limit counters of each test live under their own cache keys, because tests reuse
    # channel codes and user ids. Clearing the cache instead would flush the Redis database
    # that CI shares with the Celery broker.
    settings.OMSGUARD_RATE_LIMIT_NAMESPACE = uuid.uuid4().hex


@pytest.fixture(autouse=True)
def _breaker_baseline_uncached(settings):
    # Tests reuse action codes and channel codes, so a baseline cached by one test would be
    # read by the next. tests/guardrails/test_breaker_stats.py turns it back on.
    settings.OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS = 0


@pytest.fixture(autouse=True)
def _eager_celery():
    """Run tasks in the test process; the worker tests switch this off for themselves."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


class _CertainOnlyDraw:
    """Stands in for `random` in audit sampling: every draw is 0.999999, so only a rate of
    1 samples. Without it, any test that applies a decision would get an audit-sample item
    at random; tests of sampling itself pass their own seeded generator."""

    def random(self) -> float:
        return 0.999999


@pytest.fixture(autouse=True)
def _audit_sampling_deterministic(monkeypatch):
    monkeypatch.setattr("guardrails.sampling.random", _CertainOnlyDraw())


@pytest.fixture(autouse=True)
def _known_answer_seeding_deterministic(monkeypatch):
    # Known-answer seeding draws too; only a rate of 1 seeds. Its tests pass their own draws.
    monkeypatch.setattr("reviews.known_answers.random", _CertainOnlyDraw())


@pytest.fixture
def channel(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", webhook_secret=SECRET)


@pytest.fixture
def carriers(db) -> None:
    """The reference carriers and codes ("UPS Ground" among them) of the data migration.

    A transactional test flushes the migration's rows, so load them again when missing.
    """
    from orders.carrier_reference import carrier_reference_load

    carrier_reference_load()


@pytest.fixture
def catalog(db, channel, carriers) -> list[Sku]:
    """A few SKUs, each mapped on `channel` by its own code, and the reference carriers."""
    skus = [
        Sku.objects.create(
            code="TEE-CLASSIC-BLK-M",
            title="Classic Cotton T-Shirt - Black / M",
            price="19.99",
            currency="USD",
        ),
        Sku.objects.create(
            code="TEE-CLASSIC-WHT-M",
            title="Classic Cotton T-Shirt - White / M",
            price="19.99",
            currency="USD",
        ),
        Sku.objects.create(
            code="MUG-ENAMEL-NVY-OS",
            title="Enamel Camp Mug - Navy / OS",
            price="14.00",
            currency="USD",
        ),
    ]
    for sku in skus:
        ChannelSkuMapping.objects.create(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
    return skus


# Every data migration that grants role permissions, in migration order.
ROLE_MIGRATIONS = [
    ("reviews.migrations.0002_roles", "create_role_groups"),
    ("catalog.migrations.0003_renormalize_titles_and_permissions", "grant_ops_manager"),
    ("orders.migrations.0005_carrier_roles", "grant_carrier_permissions"),
    ("inventory.migrations.0002_roles", "add_role_permissions"),
    ("inventory.migrations.0004_ops_may_reset_stock_version", "grant_reset"),
    ("orders.migrations.0007_ingestion_roles_and_sweep", "grant_add_order"),
    ("orders.migrations.0009_carrier_selection_roles", "grant_carrier_rate_permissions"),
    ("inventory.migrations.0006_replenishment_roles", "grant_replenishment"),
    ("monitoring.migrations.0002_alert_roles", "grant_alert_view"),
    ("guardrails.migrations.0003_guardrail_roles", "grant_guardrail_permissions"),
    ("orders.migrations.0011_history_roles", "grant_history_permissions"),
    ("guardrails.migrations.0006_sampling_and_confirmation_roles", "grant_sampling_views"),
    ("orders.migrations.0013_fulfilment_roles", "grant_fulfilment_permissions"),
    ("monitoring.migrations.0004_alert_defaults_and_roles", "grant_monitoring_permissions"),
    ("monitoring.migrations.0005_periodic_tasks", "grant_schedule_permissions"),
    ("guardrails.migrations.0008_canary_roles_and_schedule", "grant_rollout_permissions"),
    ("reviews.migrations.0010_label_taxonomy_and_roles", "grant_feedback_permissions"),
    ("reviews.migrations.0011_axes_unlock_role", "grant_unlock_permissions"),
]


def ensure_role_groups() -> None:
    """Recreate the role groups after a transactional test flushed the migrations' data."""
    if Group.objects.filter(name="cs_agent").exists():
        return
    for module_name, function_name in ROLE_MIGRATIONS:
        migration = importlib.import_module(module_name)
        getattr(migration, function_name)(django_apps, None)


def make_user(username: str, group: str | None) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if group:
        ensure_role_groups()
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def agent(db) -> User:
    return make_user("alice", "cs_agent")


@pytest.fixture
def outsider(db) -> User:
    """A logged-in user without any role."""
    return make_user("mallory", None)


def order_payload(
    *,
    order_id: int = 5837219471390,
    lines: list[dict] | None = None,
    **overrides,
) -> dict:
    """A minimal but realistic Shopify order body."""
    lines = lines or [
        {
            "id": 13571113171923,
            "variant_id": 44012345678901,
            "sku": "TEE-CLASSIC-BLK-M",
            "title": "Classic Cotton T-Shirt",
            "name": "Classic Cotton T-Shirt - Black / M",
            "quantity": 2,
            "price": "19.99",
        },
    ]
    payload = {
        "id": order_id,
        "name": "#1001",
        "email": "ada@example.com",
        "currency": "USD",
        "presentment_currency": "USD",
        "created_at": "2024-11-04T10:15:33-05:00",
        "updated_at": "2024-11-04T10:15:34-05:00",
        "subtotal_price": "39.98",
        "total_tax": "0.00",
        "total_discounts": "0.00",
        "total_price": "44.98",
        "total_shipping_price_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"}},
        "customer": {"id": 7012345678901, "first_name": "Ada", "last_name": "Quill"},
        "shipping_address": {
            "name": "Ada Quill",
            "address1": "12 Birch Lane",
            "city": "Austin",
            "province_code": "TX",
            "zip": "78701",
            "country_code": "US",
        },
        "billing_address": None,
        "shipping_lines": [{"code": "UPS Ground", "title": "UPS Ground", "price": "5.00"}],
        "line_items": lines,
    }
    payload.update(overrides)
    return payload


def as_body(payload: dict) -> bytes:
    return json.dumps(payload).encode("utf-8")


def signed_headers(body: bytes, *, secret: str = SECRET, webhook_id: str = "wh-1") -> dict:
    return {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Hmac-Sha256": shopify.signature_for(body, secret),
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": "ev-" + webhook_id,
        # Now, as Shopify sends it: the webhook rejects deliveries older than its max age.
        "X-Shopify-Triggered-At": timezone.now().isoformat(timespec="milliseconds"),
    }


@pytest.fixture
def post_webhook(client: Client, django_capture_on_commit_callbacks) -> Callable:
    """POST a body to the Shopify webhook and run what it queued on commit."""

    def post(body: bytes, headers: dict | None = None, channel_code: str = "shop"):
        url = reverse("webhooks:shopify", kwargs={"channel_code": channel_code})
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                url,
                data=body,
                content_type="application/json",
                headers=headers if headers is not None else signed_headers(body),
            )

    return post


# Under pytest-xdist (`make test` runs it with --dist loadgroup) the tests whose node id starts
# with one of these prefixes form one unit of work: they run on one worker, one after another.
# The bench starts `make bench` once per worker that gets one of its tests, and its databases
# have fixed names. The reliability suites bind ports from fixed ranges, start private Redis and
# PostgreSQL servers and are timing-sensitive. The browser tests share one Chromium per worker.
# The other entries build a large module- or class-scoped fixture that two workers would each
# build again.
XDIST_GROUPS = {
    "tests/bench/": "bench",
    "tests/reliability/": "reliability",
    "tests/browser/": "browser",
    "tests/security/test_authz_matrix.py": "authz-matrix",
    "tests/security/test_deploy_check.py": "deploy-check",
    "tests/monitoring/test_demo_history.py::TestSmallHistory": "demo-history",
    "tests/inventory/test_demo.py": "inventory-demo",
}
# Groups whose tests never write to the test database: the scheduler starts them first.
XDIST_GROUPS_FIRST = {"bench"}


def xdist_group_of(nodeid: str) -> str | None:
    """The XDIST_GROUPS group of a test's node id (relative to the rootdir), or None."""
    for prefix, group in XDIST_GROUPS.items():
        if nodeid.startswith(prefix):
            return group
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Schedule --dist loadgroup by XDIST_GROUPS, in the controller, which sees every node id.

    xdist 3.8 implements the xdist_group marker by appending "@group" to the node id in the
    worker, which has no effect from pytest 9.2 on (a node id is no longer an attribute that a
    plugin can overwrite), so the marker alone would put the tests of a group on any worker.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class DirectoryGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid) or super()._split_scope(nodeid)

        def schedule(self) -> None:
            # Units go in collection order (see pytest_collection_modifyitems below), not
            # largest first as xdist's default would, and XDIST_GROUPS_FIRST before all.
            if self.collection is not None or not self._check_nodes_have_same_collection():
                super().schedule()
                return
            self.collection = list(next(iter(self.registered_collections.values())))
            if not self.collection:
                return
            units: dict[str, dict[str, bool]] = {}
            position: dict[str, int] = {}
            for index, nodeid in enumerate(self.collection):
                scope = self._split_scope(nodeid)
                units.setdefault(scope, {})[nodeid] = False
                position.setdefault(scope, -1 if scope in XDIST_GROUPS_FIRST else index)
            for scope in sorted(units, key=position.__getitem__):
                self.workqueue[scope] = units[scope]
            # From here on as LoadScopeScheduling.schedule (xdist 3.8).
            for _ in range(max(len(self.nodes) - len(self.workqueue), 0)):
                unused_node, _assigned = self.assigned_work.popitem()
                unused_node.shutdown()
            for node in self.nodes:
                self._assign_work_unit(node)
            for node in self.nodes:
                self._reschedule(node)
            if not self.workqueue:
                for node in self.nodes:
                    node.shutdown()

    return DirectoryGroupScheduling(config, log)


def _uses_transactions(item: pytest.Item) -> bool:
    """Whether pytest-django runs the test as a transactional one (it sorts those last)."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", [])
    transactional = bool(
        marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))
    )
    return transactional or "transactional_db" in fixtures or "live_server" in fixtures


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # pytest-django has sorted the items: database tests, then transactional tests, whose
    # teardown empties every table (the data migrations' role groups too), then tests without
    # a database. A worker must keep that order, so each group moves to its first test. A group
    # with both plain database tests and transactional ones moves to the first transactional
    # test of the session instead. The worker that runs it has then run only plain database
    # tests before it and gets none after it. Every worker computes the same order, and the
    # controller keeps it.
    if not (hasattr(config, "workerinput") and config.getoption("loadgroup", False)):
        return
    transactional = [_uses_transactions(item) for item in items]
    boundary = transactional.index(True) if any(transactional) else len(items)
    anchors: dict[str, int] = {}
    for index, item in enumerate(items):
        group = xdist_group_of(item.nodeid)
        if group is None:
            continue
        if group not in anchors:
            anchors[group] = index
        elif transactional[index] and not transactional[anchors[group]]:
            # Plain database tests and transactional ones: at the boundary of the two.
            anchors[group] = boundary
    if not anchors:
        return
    members: dict[str, list[pytest.Item]] = {group: [] for group in anchors}
    rest: list[tuple[int, pytest.Item]] = []
    for index, item in enumerate(items):
        group = xdist_group_of(item.nodeid)
        if group is None:
            rest.append((index, item))
        else:
            members[group].append(item)
    ordered: list[pytest.Item] = []
    starts = sorted((index, group) for group, index in anchors.items())
    for index, item in rest:
        while starts and starts[0][0] <= index:
            ordered.extend(members[starts.pop(0)[1]])
        ordered.append(item)
    for _, group in starts:
        ordered.extend(members[group])
    items[:] = ordered


def pytest_configure(config: pytest.Config) -> None:
    from tests.reliability import figures

    # A plugin, not the reliability conftest: under xdist only the controller prints the
    # summary, and it loads no conftest below tests/ when the whole suite runs.
    config.pluginmanager.register(figures, "omsguard-reliability-figures")


# CI gate: with OMSGUARD_REQUIRE_BROWSER=1 a run fails unless at least one test marked `browser`
# passed, so skipped, deselected or erroring browser tests cannot go unnoticed. CI sets it and
# runs the whole suite. A subset run (-k, a single file) with no browser test in it fails too.
REQUIRE_BROWSER_VARIABLE = "OMSGUARD_REQUIRE_BROWSER"
_browser_tests_passed = 0
_browser_gate_failure = ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Under xdist the controller receives the reports of every worker through this hook too.
    global _browser_tests_passed
    if report.when == "call" and report.passed and "browser" in report.keywords:
        _browser_tests_passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _browser_gate_failure
    # An xdist worker saw only its share of the tests; the controller, which saw them all,
    # decides.
    if hasattr(session.config, "workerinput"):
        return
    if os.environ.get(REQUIRE_BROWSER_VARIABLE) != "1" or _browser_tests_passed > 0:
        return
    _browser_gate_failure = (
        f"{REQUIRE_BROWSER_VARIABLE}=1 but no browser test passed: run the whole suite with "
        "Chromium (apt-get install chromium) and the dev extras (pip install -e '.[dev]')."
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    # The terminal reporter prints its summary after pytest_sessionfinish, so the message set
    # there appears next to the test counts.
    if _browser_gate_failure:
        terminalreporter.write_line(_browser_gate_failure, red=True, bold=True)
