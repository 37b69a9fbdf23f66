"""breakers_check_queue: one queued breaker check replaces the checks of later decisions."""

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from guardrails import tasks
from guardrails.models import Decision
from guardrails.services import decision_propose
from omsguard.celery import app as celery_app
from orders.models import Order
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401


@pytest.fixture(name="countdowns")
def countdowns_fixture() -> list[int | None]:
    return []


@pytest.fixture(name="published")
def published_fixture(monkeypatch, countdowns) -> Iterator[list[int]]:
    """Broker mode (not eager), with each published check's decision id and countdown
    recorded."""
    published: list[int] = []

    def publish(args, countdown=None):
        published.append(args[0])
        countdowns.append(countdown)

    def publish_now(decision_id):
        publish((decision_id,))

    monkeypatch.setattr(tasks.breakers_check_after_decision, "apply_async", publish)
    monkeypatch.setattr(tasks.breakers_check_after_decision, "delay", publish_now)
    celery_app.conf.task_always_eager = False
    yield published
    celery_app.conf.task_always_eager = True


@pytest.fixture(name="model_name")
def model_name_fixture() -> str:
    # The pending-check key lives in the shared cache; a model name of its own keeps each
    # test's keys apart.
    return f"gpt-ship-{uuid.uuid4().hex[:8]}"


def _propose(order: Order, model_name: str) -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code="estimate_ship_date",
        before={},
        after={"ship_date": "2026-12-07"},
        confidence=Decimal("0.9"),
        model_name=model_name,
        model_version="1",
    )


def test_second_decision_rides_on_queued_check(order, published, model_name):
    first, second = _propose(order, model_name), _propose(order, model_name)

    assert tasks.breakers_check_queue(first)
    assert not tasks.breakers_check_queue(second)
    assert published == [first.pk]


def test_started_check_lets_next_queue(order, published, model_name):
    first = _propose(order, model_name)
    tasks.breakers_check_queue(first)

    # The task body, as the worker runs it.
    tasks.breakers_check_after_decision.run(first.pk)
    later = _propose(order, model_name)

    assert tasks.breakers_check_queue(later)
    assert published == [first.pk, later.pk]


def test_other_model_queues_own_check(order, published, model_name):
    first = _propose(order, model_name)
    other = _propose(order, f"{model_name}-other")

    assert tasks.breakers_check_queue(first)
    assert tasks.breakers_check_queue(other)
    assert published == [first.pk, other.pk]


def test_eager_mode_checks_every_decision(order, published, model_name):
    celery_app.conf.task_always_eager = True
    first, second = _propose(order, model_name), _propose(order, model_name)

    tasks.breakers_check_queue(first)
    tasks.breakers_check_queue(second)

    assert published == [first.pk, second.pk]


def test_cache_failure_queues_check(order, published, model_name, monkeypatch):
    def add_fails(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(tasks.cache, "add", add_fails)
    first, second = _propose(order, model_name), _propose(order, model_name)

    tasks.breakers_check_queue(first)
    tasks.breakers_check_queue(second)

    assert published == [first.pk, second.pk]


def test_marker_delete_failure_still_checks(order, published, model_name, monkeypatch):
    def delete_fails(*args, **kwargs):
        raise ConnectionError("cache down")

    checked: list[int] = []
    monkeypatch.setattr(tasks.cache, "delete", delete_fails)
    monkeypatch.setattr(
        tasks.breakers,
        "breakers_check_after_decision",
        lambda *, decision_id: checked.append(decision_id),
    )
    decision = _propose(order, model_name)

    tasks.breakers_check_after_decision.run(decision.pk)

    assert checked == [decision.pk]


def test_commit_queues_check(order, published, model_name, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        decision = _propose(order, model_name)

    assert published == [decision.pk]


def test_check_starts_after_configured_delay(order, published, countdowns, model_name, settings):
    settings.OMSGUARD_BREAKER_CHECK_DELAY_SECONDS = 3

    _ = tasks.breakers_check_queue(_propose(order, model_name))

    assert countdowns == [3]


def test_zero_delay_starts_check_at_once(order, published, countdowns, model_name, settings):
    settings.OMSGUARD_BREAKER_CHECK_DELAY_SECONDS = 0

    _ = tasks.breakers_check_queue(_propose(order, model_name))

    assert countdowns == [None]
