"""Celery tasks of the guardrail engine: breaker checks, the breaker sweep, the autonomy gates,
audit sampling rates and canary evaluations."""

import hashlib
import logging

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError

from . import autonomy, breakers, rollouts, sampling
from .models import Decision

logger = logging.getLogger(__name__)

# Seconds a queued breaker check replaces the checks of later decisions of its scopes. After
# that, a check that never ran (a lost message, a stopped worker) no longer delays the next
# decision's check.
BREAKER_CHECK_PENDING_SECONDS = 60


def breakers_check_queue(decision: Decision) -> bool:
    """Queue a breaker check for the decision's scopes unless one is queued and not started.

    A check reads the breakers and the decision counts when it starts, so a check still
    waiting in the queue also counts every decision committed before it starts. The check
    starts OMSGUARD_BREAKER_CHECK_DELAY_SECONDS after this decision, which bounds a busy
    scope to about one check per delay. Returns whether a task was published. In eager mode,
    and when the cache fails, every decision queues its own check.
    """
    if breakers_check_after_decision.app.conf.task_always_eager:
        breakers_check_after_decision.delay(decision.pk)
        return True
    key = _pending_check_key(decision.action_id, decision.channel_id, decision.model_name)
    try:
        claimed = cache.add(key, decision.pk, timeout=BREAKER_CHECK_PENDING_SECONDS)
    except Exception:
        logger.warning(
            "breaker check marker not stored; queueing a check for this decision",
            exc_info=True,
            extra={"decision": decision.pk, "key": key},
        )
        claimed = True
    if claimed:
        delay = settings.OMSGUARD_BREAKER_CHECK_DELAY_SECONDS
        breakers_check_after_decision.apply_async((decision.pk,), countdown=delay or None)
    return claimed


def _pending_check_clear(decision_id: int, key: str) -> None:
    """Delete the queued-check marker before the check reads anything, so that a decision
    committed after this point queues a check of its own."""
    try:
        cache.delete(key)
    except Exception:
        # The check still runs. Until the marker expires, later decisions of these scopes
        # queue no check of their own.
        logger.warning(
            "breaker check marker not deleted",
            exc_info=True,
            extra={"decision": decision_id, "key": key},
        )


def _pending_check_key(action_id: int, channel_id: int, model_name: str) -> str:
    # Model names are free text; the digest keeps the key short and free of spaces.
    model = hashlib.sha256(model_name.encode()).hexdigest()[:32]
    return f"guardrails:breaker-check-pending:{action_id}:{channel_id}:{model}"


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    max_retries=3,
    retry_backoff=True,
)
def breakers_check_after_decision(decision_id: int) -> None:
    """Run the breaker checks for one decision; queued on commit by `breakers_check_queue`.

    Running it twice is harmless: breaker changes are idempotent.
    """
    scope_rows = Decision.objects.filter(pk=decision_id).values(
        "action_id", "channel_id", "model_name"
    )
    for scopes in scope_rows:
        _pending_check_clear(decision_id, _pending_check_key(**scopes))
    breakers.breakers_check_after_decision(decision_id=decision_id)


@shared_task
def breakers_sweep() -> int:
    """Start trials whose cool-down is over and judge half-open trials; scheduled by beat."""
    changed = breakers.breakers_sweep()
    if changed:
        logger.info("breakers swept", extra={"changed": changed})
    return changed


@shared_task
def autonomy_gates_recompute() -> int:
    """Recompute every action's autonomy gate so old errors leave the window; beat runs it."""
    return autonomy.autonomy_gates_recompute()


@shared_task
def sampling_rates_recompute() -> int:
    """Recompute every action's audit sampling rate from its disagreement rate; beat runs it."""
    return sampling.sampling_rates_recompute()


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def sampling_rate_recompute_for_action(action_code: str) -> None:
    """Recompute one action's sampling rate; queued when one of its audit samples is decided."""
    sampling.sampling_rate_recompute(action_code=action_code)


@shared_task
def canaries_evaluate() -> int:
    """Evaluate every running or paused canary: roll back, pause or record; beat runs it."""
    evaluations = rollouts.canaries_evaluate()
    acted = [item for item in evaluations if item["action_taken"] != "none"]
    if acted:
        logger.info(
            "canaries acted on",
            extra={"canaries": [item["canary"] for item in acted], "count": len(acted)},
        )
    return len(evaluations)
