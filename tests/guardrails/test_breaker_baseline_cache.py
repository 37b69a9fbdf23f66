"""Breaker statistics: the window is read on every check, the baseline reused for a while."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from guardrails import breaker_stats
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401

pytestmark = pytest.mark.django_db


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
    return breaker_stats.scope_stats(
        {"model_name": model}, window_start, baseline_start, window_start
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
        "window_start": window_start,
        "baseline_start": window_start - timedelta(days=7),
        "baseline_end": window_start,
    }
    first = breaker_stats.mix_stats(**arguments)

    _backdated(order, model, 10)

    assert breaker_stats.mix_stats(**arguments)["baseline_total"] == first["baseline_total"]


def test_cache_failure_reads_database(order, model, cached, monkeypatch, caplog):
    def get_fails(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(breaker_stats.cache, "get", get_fails)
    _backdated(order, model, 20)

    assert _stats(model)["baseline_total"] == 20
    assert "breaker baseline cache read failed" in caplog.text
