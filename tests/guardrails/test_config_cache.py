"""The per-thread configuration cache of decisions: what it saves, and the writes that renew it.

These tests are transactional: the cache keeps rows only when the decision's transaction
commits, and a test wrapped in one transaction never commits.
"""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from guardrails import config_cache
from guardrails.breakers import breaker_open
from guardrails.models import (
    ActionType,
    BreakerCause,
    BreakerScope,
    ConfigStamp,
    GuardrailSettings,
    Policy,
    PolicyVersion,
    Verdict,
)
from guardrails.policies import policy_version_create, policy_version_publish
from guardrails.selectors import action_get, reads_shared
from guardrails.services import DecisionError, decision_propose
from orders.models import Order
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401
from tests.guardrails.test_decision_queries import order_copy

pytestmark = pytest.mark.django_db(transaction=True)

# Tables a warm decision must not read: their rows come from the cache.
CACHED_TABLES = (
    "guardrails_actiontype",
    "guardrails_policy",
    "guardrails_policyversion",
    "guardrails_guardrailsettings",
    "guardrails_autonomygate",
    "guardrails_breaker",
    "guardrails_canary",
    "guardrails_version",
)
# Queries of a warm decision judged recommendation-only or blocked: the stamp, the order lock,
# the pending-review check, the priority customer, the lines' margin, the decision, its audit
# entry and order event, and the transaction's BEGIN and COMMIT on PostgreSQL.
WARM_QUERIES = 10


@pytest.fixture(autouse=True)
def _cache_empty():
    config_cache.config_cache_clear()
    yield
    config_cache.config_cache_clear()


class _Rollback(Exception):
    pass


def _propose(order: Order, action: str = "estimate_ship_date"):
    before, after = {}, {"ship_date": "2026-12-07"}
    if action == "change_billing_address":
        before, after = {"billing_address": None}, {"billing_address": {"city": "Austin"}}
    return decision_propose(
        order_id=order.pk,
        action_code=action,
        before=before,
        after=after,
        confidence=Decimal("0.9"),
        model_name="gpt-ship",
        model_version="1",
    )


def _warm(order: Order, action: str = "estimate_ship_date") -> None:
    """Fill the cache. The first decision of an action computes its autonomy gate, and that
    write renews the token, so only the second one leaves rows cached under the current one."""
    _propose(order_copy(order, 101), action)
    _propose(order_copy(order, 102), action)


def _reads(queries: CaptureQueriesContext, table: str) -> int:
    forms = (f'FROM "{table}"', f"FROM {table} ")
    return sum(any(form in query["sql"] for form in forms) for query in queries.captured_queries)


def _publish_block(action: str) -> PolicyVersion:
    policy = Policy.objects.get(action__code=action, channel__isnull=True)
    version = policy_version_create(
        policy=policy, user=None, changelog="Block every proposal.", mode="hard_block"
    )
    policy_version_publish(version=version, user=None)
    return version


@pytest.mark.parametrize("action", ["estimate_ship_date", "change_billing_address"])
def test_warm_decision_reads_stamp_only(order, action, monkeypatch):
    # The breaker check runs in a worker after the decision; eager Celery would run it here.
    monkeypatch.setattr("guardrails.services._breakers_check_enqueue", lambda decision_id: None)
    _warm(order, action)

    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order, action)

    assert decision.verdict in (Verdict.RECOMMENDATION_ONLY, Verdict.BLOCKED)
    assert _reads(queries, "guardrails_configstamp") == 1
    for table in CACHED_TABLES:
        assert _reads(queries, table) == 0, table
    assert len(queries.captured_queries) <= WARM_QUERIES


def test_version_published_by_update_judges_next(order):
    _warm(order)
    policy = Policy.objects.get(action__code="estimate_ship_date", channel__isnull=True)
    version = policy_version_create(
        policy=policy, user=None, changelog="Block ship date estimates.", mode="hard_block"
    )
    # Only the rows change, as when another process publishes: no signal, no Python hook.
    PolicyVersion.objects.filter(pk=version.pk).update(published_at=version.created_at)
    Policy.objects.filter(pk=policy.pk).update(live_version=version)

    decision = _propose(order)

    assert decision.verdict == Verdict.BLOCKED
    assert decision.policy_version_id == version.pk


def test_settings_update_reaches_next_facts(order):
    _warm(order)

    GuardrailSettings.objects.filter(pk=1).update(autonomy_window_days=7)
    decision = _propose(order)

    assert decision.facts["autonomy"]["window_days"] == 7


def test_action_disabled_by_raw_sql(order):
    _warm(order)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE guardrails_actiontype SET is_active = %s WHERE code = %s",
            [False, "estimate_ship_date"],
        )

    with pytest.raises(DecisionError) as raised:
        _propose(order)

    assert raised.value.code == "unknown_action"


def test_breaker_opened_reaches_next_facts(order):
    _warm(order)
    breaker_open(
        scope=BreakerScope.MODEL,
        key="gpt-ship",
        cause=BreakerCause.MANUAL,
        detail="Paused by hand.",
    )

    decision = _propose(order)

    assert [(fact["scope"], fact["key"]) for fact in decision.facts["breakers"]] == [
        ("model", "gpt-ship")
    ]


def test_rolled_back_read_not_cached(order):
    """A row read after an uncommitted write, under the token read before it, is dropped."""
    _warm(order)

    with pytest.raises(_Rollback), reads_shared(), transaction.atomic():
        # The stamp is read here, before the write below renews it.
        assert action_get(code="select_carrier") is not None
        ActionType.objects.filter(code="change_billing_address").update(is_active=False)
        assert action_get(code="change_billing_address") is None
        raise _Rollback

    decision = _propose(order, "change_billing_address")

    assert decision.verdict == Verdict.BLOCKED


def test_rolled_back_publication_not_kept(order):
    _warm(order)

    with pytest.raises(_Rollback), transaction.atomic():
        _publish_block("estimate_ship_date")
        assert _propose(order_copy(order, 2)).verdict == Verdict.BLOCKED
        raise _Rollback

    assert _propose(order).verdict == Verdict.RECOMMENDATION_ONLY


def test_missing_stamp_row_turns_cache_off(order):
    _warm(order)
    # A delete of the stamp row itself renews nothing, as after Django's flush.
    ConfigStamp.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order)

    assert decision.verdict == Verdict.RECOMMENDATION_ONLY
    assert _reads(queries, "guardrails_policy") == 1


def test_every_watched_table_has_trigger(db):
    tables = set(config_cache.watched_tables())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s",
                ["guardrails_configstamp_renew"],
            )
            found = {row[0].strip('"') for row in cursor.fetchall()}
        else:
            cursor.execute(
                "SELECT tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
                ["guardrails_configstamp_renew_%"],
            )
            rows = [row[0] for row in cursor.fetchall()]
            # One trigger for each of INSERT, UPDATE and DELETE.
            found = {table for table in rows if rows.count(table) == 3}

    assert found == tables


def test_bulk_update_renews_token(order):
    before = ConfigStamp.objects.get(pk=1).token

    Policy.objects.update(shadow_version=None)

    assert ConfigStamp.objects.get(pk=1).token != before
