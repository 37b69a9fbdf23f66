"""Celery tasks of the guardrail engine: breaker checks, the breaker sweep, the autonomy gates."""

import logging

from celery import shared_task
from django.db import OperationalError

from . import autonomy, breakers

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
