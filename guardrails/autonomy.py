"""The autonomy gate: an action type runs autonomously only while its error rate stays low.

The rate is errors / autonomous decisions over the rolling `autonomy_window_days` (30 by
default), counted by decision time (`created_at`):

- autonomous decisions: decisions of the action that the engine let through without a person,
  i.e. verdict `applied`, plus those whose autonomous apply failed (the decision service then
  sets `apply_error` and moves them to review). Other queued, recommended and blocked
  proposals do not count, and neither do proposals a person approved, nor a shadow canary's
  records of its candidate (never applied, but kept out explicitly because they carry the
  live model's name).
- errors: those of them with `Decision.is_error`, i.e. labelled an error or failed to apply.

The gate is suspended when the rate is at or over `autonomy_max_error_rate` (0.2 % by
default) and allowed again when it falls under it, for instance when old errors leave the
window. The engine reads the stored gate, so a decision costs no 30-day count; labels and a
periodic task recompute it. A changed setting takes effect at the next recompute.
"""

import logging
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from .breaker_stats import ERROR
from .models import ActionType, AutonomyGate, Decision, Verdict
from .rollout_selectors import shadow_record_q
from .selectors import guardrail_settings, shared_config_read
from .services import audit_record

logger = logging.getLogger(__name__)

SYSTEM_LABEL = "autonomy gate"
RATE_PLACES = Decimal("0.000001")

# Let through by the engine: applied, or applying failed (only the autonomous path sets
# apply_error; a person's successful apply later clears it).
AUTONOMOUS = Q(verdict=Verdict.APPLIED) | ~Q(apply_error="")


def autonomy_gate_recompute(*, action_code: str) -> AutonomyGate:
    """Count the action's autonomous decisions and errors over the window and store the gate.

    A change between suspended and allowed is audited with the figures and stamps `changed_at`.
    Raises ActionType.DoesNotExist for an unknown action code.
    """
    action = ActionType.objects.get(code=action_code)
    config = guardrail_settings()
    since = timezone.now() - timedelta(days=config.autonomy_window_days)
    counts = (
        Decision.objects.filter(action=action, created_at__gte=since)
        .filter(AUTONOMOUS)
        .exclude(shadow_record_q())
        .aggregate(decisions=Count("id"), errors=Count("id", filter=ERROR))
    )
    decisions, errors = counts["decisions"], counts["errors"]

    # Compare exactly (errors >= limit * decisions) so a rate equal to the limit suspends.
    suspended = decisions > 0 and Decimal(errors) >= config.autonomy_max_error_rate * decisions
    rate = (
        (Decimal(errors) / decisions).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)
        if decisions
        else Decimal("0")
    )

    with transaction.atomic():
        AutonomyGate.objects.get_or_create(action=action)
        gate = AutonomyGate.objects.select_for_update().get(action=action)
        was_suspended = gate.suspended
        now = timezone.now()
        gate.suspended = suspended
        gate.error_rate = rate
        gate.errors = errors
        gate.autonomous_decisions = decisions
        gate.computed_at = now
        if was_suspended != suspended:
            gate.changed_at = now
        gate.save()

        if was_suspended != suspended:
            _audit_change(gate, config, was_suspended=was_suspended)
    return gate


def autonomy_gates_recompute() -> int:
    """Recompute the gate of every active action type; return how many were recomputed."""
    codes = list(ActionType.objects.filter(is_active=True).values_list("code", flat=True))
    for code in codes:
        autonomy_gate_recompute(action_code=code)
    return len(codes)


def autonomy_facts(*, action_code: str) -> dict:
    """Return the engine's "autonomy" facts from the stored gate; {} for an unknown action.

    A gate that is missing or was never computed is computed once here, so an action's first
    decision is judged on its real record rather than on an empty row.
    """

    def read() -> AutonomyGate | None:
        return AutonomyGate.objects.filter(action__code=action_code).first()

    gate = shared_config_read(("autonomy_gate", action_code), read)
    if gate is None or gate.computed_at is None:
        if not ActionType.objects.filter(code=action_code).exists():
            return {}
        gate = autonomy_gate_recompute(action_code=action_code)

    config = guardrail_settings()
    return {
        "suspended": gate.suspended,
        "error_rate": str(gate.error_rate),
        "max_error_rate": str(config.autonomy_max_error_rate),
        "window_days": config.autonomy_window_days,
        "errors": gate.errors,
        "decisions": gate.autonomous_decisions,
    }


def _audit_change(gate: AutonomyGate, config, *, was_suspended: bool) -> None:
    figures = {
        "errors": gate.errors,
        "decisions": gate.autonomous_decisions,
        "error_rate": str(gate.error_rate),
        "max_error_rate": str(config.autonomy_max_error_rate),
        "window_days": config.autonomy_window_days,
    }
    if gate.suspended:
        reason = (
            f"Error rate {gate.error_rate} ({gate.errors} of {gate.autonomous_decisions} "
            f"autonomous decisions over {config.autonomy_window_days} days) is at or over "
            f"{config.autonomy_max_error_rate}; autonomy is suspended."
        )
    else:
        reason = (
            f"Error rate {gate.error_rate} is under {config.autonomy_max_error_rate}; "
            "autonomy is allowed again."
        )
    audit_record(
        action="autonomy_gate.suspend" if gate.suspended else "autonomy_gate.resume",
        target_type="guardrails.actiontype",
        target_id=gate.action.code,
        system_label=SYSTEM_LABEL,
        reason=reason,
        before={"suspended": was_suspended},
        after={"suspended": gate.suspended, **figures},
    )
    logger.warning(
        "autonomy gate changed",
        extra={"action": gate.action.code, "suspended": gate.suspended, **figures},
    )
