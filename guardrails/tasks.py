"""Celery tasks of the guardrail engine: breaker checks, the breaker sweep, the autonomy gates,
audit sampling rates and canary evaluations."""

import logging

from celery import shared_task
from django.db import OperationalError

from . import autonomy, breakers, rollouts, sampling

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    max_retries=3,
    retry_backoff=True,
)
def breakers_check_after_decision(decision_id: int) -> None:
    """Run the breaker checks for one decision; queued on commit by the decision service.

    Running it twice is harmless: breaker changes are idempotent.
    """
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
