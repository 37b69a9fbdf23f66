"""Breaker statistics: one query for the window counts of a decision's scopes, and the
baseline counts reused for a while."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Avg, Count
from django.utils import timezone

from guardrails import breaker_stats
from guardrails.models import ActionType, Decision
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

# The breaker checks compare means at this precision.
FOUR_PLACES = Decimal("0.0001")


@pytest.fixture(name="model")
def model_fixture() -> str:
    # The cache outlives a test; a model name of its own keeps each test's keys apart.
    return f"gpt-cache-{uuid.uuid4().hex[:8]}"


@pytest.fixture(name="cached")
def cached_fixture(settings) -> None:
    settings.OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS = 300


def _stats(model: str, baseline_days: int = 7) -> dict:
    now = timezone.now()
    window_start = now - timedelta(minutes=60)
    baseline_start = window_start - timedelta(days=baseline_days)
    window = breaker_stats.window_stats(keys={"model": model}, starts={"model": window_start})[
        "model"
    ]
    return window | breaker_stats.scope_baseline(
        {"model_name": model}, baseline_start, window_start
    )


def _backdated(order, model: str, count: int) -> None:
    decisions_create(order, count, model=model, at=timezone.now() - timedelta(days=2))


def test_baseline_reused_window_fresh(order, model, cached):
    _backdated(order, model, 20)
    decisions_create(order, 5, model=model)
    first = _stats(model)

    _backdated(order, model, 10)
    decisions_create(order, 3, model=model)
    second = _stats(model)

    assert first["baseline_total"] == 20
    assert second["baseline_total"] == 20
    assert first["window_total"] == 5
    assert second["window_total"] == 8


def test_zero_seconds_reads_baseline_each_time(order, model, settings):
    settings.OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS = 0
    _backdated(order, model, 20)
    _ = _stats(model)

    _backdated(order, model, 10)

    assert _stats(model)["baseline_total"] == 30


def test_other_baseline_length_read_anew(order, model, cached):
    _backdated(order, model, 20)
    _ = _stats(model, baseline_days=7)

    _backdated(order, model, 10)

    assert _stats(model, baseline_days=3)["baseline_total"] == 30


def test_mix_baseline_reused(order, model, cached):
    _backdated(order, model, 20)
    channel_id, action_id = order.channel_id, order.decisions.first().action_id
    now = timezone.now()
    window_start = now - timedelta(minutes=60)
    arguments = {
        "channel_id": channel_id,
        "action_id": action_id,
        "baseline_start": window_start - timedelta(days=7),
        "baseline_end": window_start,
    }
    first = breaker_stats.mix_baseline(**arguments)

    _backdated(order, model, 10)

    assert breaker_stats.mix_baseline(**arguments)["baseline_total"] == first["baseline_total"]


def test_cache_failure_reads_database(order, model, cached, monkeypatch, caplog):
    def get_fails(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(breaker_stats.cache, "get", get_fails)
    _backdated(order, model, 20)

    assert _stats(model)["baseline_total"] == 20
    assert "breaker baseline cache read failed" in caplog.text


def _orm_window(filters: dict, start) -> dict:
    # The ORM aggregate that window_stats replaced, as the reference for its SQL.
    counted = breaker_stats.COUNTED
    return (
        breaker_stats.live_decisions()
        .filter(**filters, created_at__gte=start)
        .aggregate(
            window_counted=Count("id", filter=counted),
            window_errors=Count("id", filter=counted & breaker_stats.ERROR),
            window_total=Count("id"),
            window_confidence=Avg("confidence"),
        )
    )


def test_window_stats_match_orm_aggregates(order, model):
    now = timezone.now()
    decisions_create(order, 6, model=model, errors=1, apply_errors=2, confidence="0.91")
    decisions_create(order, 4, model=model, applied=False, confidence="0.70")
    decisions_create(order, 3, model=f"{model}-other", action="select_carrier", errors=1)
    decisions_create(order, 5, model=model, at=now - timedelta(minutes=90))
    starts = {
        "action": now - timedelta(minutes=60),
        "channel": now - timedelta(minutes=120),
        "model": now - timedelta(minutes=30),
    }
    substitution = ActionType.objects.get(code="substitute_sku")
    keys = {"action": substitution.pk, "channel": order.channel_id, "model": model}

    stats = breaker_stats.window_stats(keys=keys, starts=starts, mix_channel_id=order.channel_id)

    filters = {
        "action": {"action_id": substitution.pk},
        "channel": {"channel_id": order.channel_id},
        "model": {"model_name": model},
    }
    for scope, start in starts.items():
        expected = _orm_window(filters[scope], start)
        confidence = stats[scope].pop("window_confidence")
        assert confidence.quantize(FOUR_PLACES) == expected.pop("window_confidence").quantize(
            FOUR_PLACES
        ), scope
        assert stats[scope] == expected, scope
    in_channel = Decision.objects.filter(
        channel_id=order.channel_id, created_at__gte=starts["action"]
    )
    assert stats["mix"] == {
        "window_total": in_channel.count(),
        "window_action": in_channel.filter(action_id=substitution.pk).count(),
    }
    assert stats["channel"]["window_total"] == 18
    assert stats["action"]["window_errors"] == 3


def test_window_stats_without_scopes_reads_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert breaker_stats.window_stats(keys={}, starts={}) == {}
