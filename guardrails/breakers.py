"""Circuit breakers: switches that take autonomy away from an action type, a channel or a model.

A breaker opens automatically on errors (the error rate over a window) and on behaviour (a
decision mix far from its baseline, a collapse in confidence), when an integration reports
upstream degradation, or by hand. An automatically opened breaker moves to half-open after
its cool-down and lets `breaker_trial_decisions` decisions through; it closes when none of
them is an error and opens again on the first error. Breakers opened by hand stay open until
someone closes them; breakers opened on upstream degradation stay open until recovery is
reported (then half-open) or someone closes them.

A shadow canary's records of its candidate (`rollout_selectors.shadow_record_q`) carry the live
model's name but decided nothing, so no window, baseline or trial counts them.

What counts as an error: `Decision.is_error`, i.e. labelled an error or failed to apply. The
error rate only counts decisions that OMS Guard applied or tried to apply (`applied_at` set or
`apply_error` not empty), because a recommendation or a queued proposal that nobody carried
out cannot have gone wrong in the order.

Every state change writes a BreakerEvent with its cause and figures and an audit entry.
Changes are idempotent: opening an open breaker records nothing new.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .breaker_stats import live_decisions, mix_baseline, scope_baseline, window_stats
from .models import (
    Breaker,
    BreakerCause,
    BreakerEvent,
    BreakerScope,
    BreakerState,
    Decision,
    GuardrailSettings,
)
from .selectors import guardrail_settings, reads_shared_active, shared_config_read
from .services import audit_record

logger = logging.getLogger(__name__)

SYSTEM_LABEL = "circuit breakers"

# Causes of an automatic opening: these breakers move to half-open once the cool-down is over.
AUTOMATIC_CAUSES = frozenset(
    {
        BreakerCause.ERROR_RATE,
        BreakerCause.DECISION_MIX,
        BreakerCause.CONFIDENCE_COLLAPSE,
        BreakerCause.TRIAL_FAILED,
    }
)

# Firmness of each opening cause; unlisted (automatic) causes are 0. Opening an open breaker
# with a firmer cause replaces its cause, so an upstream report stops a running cool-down.
_CAUSE_FIRMNESS = {BreakerCause.MANUAL: 2, BreakerCause.UPSTREAM: 1}

# The Decision field that contains each scope's key.
_SCOPE_FILTER = {
    BreakerScope.ACTION: "action__code",
    BreakerScope.CHANNEL: "channel__code",
    BreakerScope.MODEL: "model_name",
}


class BreakerError(Exception):
    """A breaker request that cannot be carried out, with the HTTP `status` the API returns."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


# --- Reads on the decision path -------------------------------------------------------------


def breaker_facts(*, action_code: str, channel_code: str, model_name: str) -> list[dict]:
    """Return the non-closed breakers of the three scopes as the engine's "breakers" facts.

    An automatically opened breaker whose cool-down is over moves to half-open here (the
    decision path is where it matters first). `trial_allowed` is True for a half-open breaker
    while fewer than `breaker_trial_decisions` decisions were made in its scope since the trial
    started. Inside a decision's `reads_shared()` block, no query when the cached list of
    breakers that are not closed has none of the three scopes; else one indexed query.
    """
    scopes = {
        (BreakerScope.ACTION, action_code),
        (BreakerScope.CHANNEL, channel_code),
        (BreakerScope.MODEL, model_name),
    }
    if reads_shared_active() and not scopes & _not_closed_scopes():
        return []
    breakers = list(
        Breaker.objects.filter(_scopes_q(action_code, channel_code, model_name))
        .exclude(state=BreakerState.CLOSED)
        .order_by("scope", "key")
    )
    if not breakers:
        return []

    config = guardrail_settings()
    now = timezone.now()
    facts = []
    for breaker in breakers:
        if _cool_down_over(breaker, config, now):
            breaker = _transition(
                breaker_id=breaker.pk,
                to_state=BreakerState.HALF_OPEN,
                cause=BreakerCause.COOL_DOWN,
                detail=f"Cool-down of {config.breaker_cool_down_minutes} minutes is over.",
                data={"cool_down_minutes": config.breaker_cool_down_minutes},
                from_states={BreakerState.OPEN},
            )
        facts.append(
            {
                "id": breaker.pk,
                "scope": breaker.scope,
                "key": breaker.key,
                "state": breaker.state,
                "cause": breaker.cause,
                "trial_allowed": _trial_allowed(breaker, config),
            }
        )
    return facts


def _not_closed_scopes() -> frozenset[tuple[str, str]]:
    """Return (scope, key) of every breaker that is not closed, through the configuration cache."""

    def read() -> frozenset[tuple[str, str]]:
        rows = Breaker.objects.exclude(state=BreakerState.CLOSED).values_list("scope", "key")
        return frozenset(rows)

    return shared_config_read("breakers_not_closed", read)


def breakers_list(*, state: str | None = None, scope: str | None = None):
    """Breakers, newest change first, optionally filtered by state and scope."""
    breakers = Breaker.objects.order_by("-changed_at", "scope", "key")
    if state:
        breakers = breakers.filter(state=state)
    if scope:
        breakers = breakers.filter(scope=scope)
    return breakers


def _scopes_q(action_code: str, channel_code: str, model_name: str) -> Q:
    return (
        Q(scope=BreakerScope.ACTION, key=action_code)
        | Q(scope=BreakerScope.CHANNEL, key=channel_code)
        | Q(scope=BreakerScope.MODEL, key=model_name)
    )


def _cool_down_over(breaker: Breaker, config: GuardrailSettings, now: datetime) -> bool:
    if breaker.state != BreakerState.OPEN or breaker.cause not in AUTOMATIC_CAUSES:
        return False
    if breaker.changed_at is None:
        return True
    return now >= breaker.changed_at + timedelta(minutes=config.breaker_cool_down_minutes)


def _trial_decisions(breaker: Breaker):
    """Select the decisions of the breaker's scope since its trial started, oldest first."""
    return (
        live_decisions()
        .filter(
            **{_SCOPE_FILTER[breaker.scope]: breaker.key},
            created_at__gte=breaker.trial_started_at,
        )
        .order_by("created_at", "id")
    )


def _trial_allowed(breaker: Breaker, config: GuardrailSettings) -> bool:
    if breaker.state != BreakerState.HALF_OPEN or breaker.trial_started_at is None:
        return False
    # NOTE: concurrent proposals read the same count, so a trial may let a few more than
    # `breaker_trial_decisions` through. Only the first ones are judged as the trial.
    return _trial_decisions(breaker).count() < config.breaker_trial_decisions


# --- State changes by people and integrations -----------------------------------------------


def breaker_open(
    *,
    scope: str,
    key: str,
    cause: str,
    detail: str,
    user: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> Breaker:
    """Open the breaker of a scope, creating its row on first use.

    Opening an open breaker records nothing, unless the new cause is firmer (manual over
    upstream over automatic): then the cause is replaced and an event records it.
    """
    _validate_scope(scope, key)
    # One transaction, so a new row is never seen closed with no cause: a recovery report
    # at the same moment either misses the row or finds it open.
    with transaction.atomic():
        breaker = _breaker_get_or_create(scope=scope, key=key)
        return _transition(
            breaker_id=breaker.pk,
            to_state=BreakerState.OPEN,
            cause=cause,
            detail=detail,
            data=data,
            user=user,
        )


def breaker_close(*, breaker_id: int, user: AbstractBaseUser, detail: str) -> Breaker:
    """Close a breaker by hand; closing a closed breaker records nothing."""
    if not Breaker.objects.filter(pk=breaker_id).exists():
        raise BreakerError("not_found", f"Breaker {breaker_id} does not exist.", status=404)
    return _transition(
        breaker_id=breaker_id,
        to_state=BreakerState.CLOSED,
        cause=BreakerCause.MANUAL,
        detail=detail,
        user=user,
    )


def breaker_open_by_id(*, breaker_id: int, user: AbstractBaseUser, detail: str) -> Breaker:
    """Open an existing breaker by hand; it stays open until someone closes it."""
    if not Breaker.objects.filter(pk=breaker_id).exists():
        raise BreakerError("not_found", f"Breaker {breaker_id} does not exist.", status=404)
    return _transition(
        breaker_id=breaker_id,
        to_state=BreakerState.OPEN,
        cause=BreakerCause.MANUAL,
        detail=detail,
        user=user,
    )


def breaker_report_degradation(
    *, scope: str, key: str, detail: str, user: AbstractBaseUser | None
) -> Breaker:
    """Open a breaker on an integration's report; it stays open until recovery or a close."""
    return breaker_open(scope=scope, key=key, cause=BreakerCause.UPSTREAM, detail=detail, user=user)


def breaker_report_recovery(
    *, scope: str, key: str, detail: str, user: AbstractBaseUser | None
) -> Breaker | None:
    """Move a breaker opened on upstream degradation to half-open, starting a trial.

    Returns None when the scope and key have no breaker, and creates no row then: a closed
    row with no cause would block the admin's "Add breaker" for that scope and key. Breakers
    in any other state or open for another cause (by hand, on errors) are returned as they
    are, because an upstream system's recovery is no evidence about them.

    The row is read with SELECT ... FOR UPDATE in the transaction that changes it, so a
    degradation report holding the row lock is waited for, and the breaker it opened is
    then moved to half-open. A first row that a degradation report has not committed yet is
    invisible here, so that report counts as coming after the recovery.
    """
    _validate_scope(scope, key)
    with transaction.atomic():
        breaker = Breaker.objects.select_for_update().filter(scope=scope, key=key).first()
        if breaker is None:
            return None
        if breaker.state != BreakerState.OPEN or breaker.cause != BreakerCause.UPSTREAM:
            return breaker
        return _transition(
            breaker_id=breaker.pk,
            to_state=BreakerState.HALF_OPEN,
            cause=BreakerCause.RECOVERY,
            detail=detail,
            user=user,
            from_states={BreakerState.OPEN},
            from_causes={BreakerCause.UPSTREAM},
        )


def _validate_scope(scope: str, key: str) -> None:
    if scope not in BreakerScope.values:
        raise BreakerError(
            "invalid", f"Unknown scope {scope!r}; use one of {BreakerScope.values}.", "scope"
        )
    if not key:
        raise BreakerError("invalid", "The key must not be empty.", "key")


def _breaker_get_or_create(*, scope: str, key: str) -> Breaker:
    breaker, _ = Breaker.objects.get_or_create(scope=scope, key=key)
    return breaker


def _transition(
    *,
    breaker_id: int,
    to_state: str,
    cause: str,
    detail: str,
    data: dict | None = None,
    user: AbstractBaseUser | None = None,
    from_states: set[str] | None = None,
    from_causes: set[str] | None = None,
) -> Breaker:
    """Change a breaker's state under a row lock, with its event and audit entry.

    `from_states`/`from_causes` restrict the change to a breaker still in the state it was
    read in, so two workers acting on the same reading change it once.
    """
    with transaction.atomic():
        breaker = Breaker.objects.select_for_update().get(pk=breaker_id)
        if from_states is not None and breaker.state not in from_states:
            return breaker
        if from_causes is not None and breaker.cause not in from_causes:
            return breaker
        if breaker.state == to_state and not _replaces_cause(breaker, to_state, cause):
            return breaker

        before = {"state": breaker.state, "cause": breaker.cause}
        now = timezone.now()
        breaker.state = to_state
        breaker.cause = cause
        breaker.cause_detail = detail
        breaker.changed_at = now
        breaker.trial_started_at = now if to_state == BreakerState.HALF_OPEN else None
        breaker.save(
            update_fields=[
                "state",
                "cause",
                "cause_detail",
                "changed_at",
                "trial_started_at",
                "updated_at",
            ]
        )
        BreakerEvent.objects.create(
            breaker=breaker,
            from_state=before["state"],
            to_state=to_state,
            cause=cause,
            detail=detail,
            data=data or {},
            actor=user,
        )
        audit_record(
            action=f"breaker.{to_state}",
            target_type="guardrails.breaker",
            target_id=breaker.pk,
            actor=user,
            system_label="" if user is not None else SYSTEM_LABEL,
            reason=detail,
            before=before,
            after={"state": to_state, "cause": cause, "scope": breaker.scope, "key": breaker.key}
            | ({"data": data} if data else {}),
        )

    logger.warning(
        "breaker state changed",
        extra={
            "breaker": breaker.pk,
            "scope": breaker.scope,
            "key": breaker.key,
            "from_state": before["state"],
            "to_state": to_state,
            "cause": cause,
        },
    )
    return breaker


def _replaces_cause(breaker: Breaker, to_state: str, cause: str) -> bool:
    if to_state != BreakerState.OPEN:
        return False
    return _CAUSE_FIRMNESS.get(cause, 0) > _CAUSE_FIRMNESS.get(breaker.cause, 0)


# --- Automatic checks after decisions and labels --------------------------------------------


@dataclass(frozen=True)
class _Scope:
    scope: str
    key: str
    filters: dict


def breakers_check_after_decision(*, decision_id: int) -> None:
    """Run the breaker checks for the decision's action, channel and model.

    A half-open breaker judges its trial; a closed one checks the error rate, and the action
    and model breakers also check behaviour (decision mix, confidence collapse). Open breakers
    are left alone; their cool-down runs in `breaker_facts` and the sweep.
    """
    decision = Decision.objects.select_related("action", "channel").filter(pk=decision_id).first()
    if decision is None:
        logger.warning("breaker check for a missing decision", extra={"decision": decision_id})
        return
    _check_scopes(decision)


def breaker_record_outcome(*, decision: Decision) -> None:
    """Count a label or a failed apply: may fail a trial or open a breaker on the error rate."""
    _check_scopes(decision)


def breakers_sweep() -> int:
    """Start the trials whose cool-down is over and judge half-open trials; return changes.

    Runs periodically so a breaker changes state even while its scope gets no decisions.
    """
    config = guardrail_settings()
    now = timezone.now()
    changed = 0
    for breaker in Breaker.objects.exclude(state=BreakerState.CLOSED):
        if _cool_down_over(breaker, config, now):
            _transition(
                breaker_id=breaker.pk,
                to_state=BreakerState.HALF_OPEN,
                cause=BreakerCause.COOL_DOWN,
                detail=f"Cool-down of {config.breaker_cool_down_minutes} minutes is over.",
                data={"cool_down_minutes": config.breaker_cool_down_minutes},
                from_states={BreakerState.OPEN},
            )
            changed += 1
        elif breaker.state == BreakerState.HALF_OPEN:
            changed += int(_judge_trial(breaker, config))
    return changed


def _check_scopes(decision: Decision) -> None:
    config = guardrail_settings()
    now = timezone.now()
    scopes = [
        _Scope(BreakerScope.ACTION, decision.action.code, {"action_id": decision.action_id}),
        _Scope(BreakerScope.CHANNEL, decision.channel.code, {"channel_id": decision.channel_id}),
        _Scope(BreakerScope.MODEL, decision.model_name, {"model_name": decision.model_name}),
    ]
    scopes = [scope for scope in scopes if scope.key]
    breakers = _breakers_of(scopes)
    to_check = []
    for scope in scopes:
        breaker = breakers.get((scope.scope, scope.key))
        if breaker is not None and breaker.state == BreakerState.HALF_OPEN:
            _judge_trial(breaker, config)
        elif breaker is None or breaker.state != BreakerState.OPEN:
            to_check.append((scope, _window_start(breaker, config, now)))
    if not to_check:
        return

    windows = window_stats(
        keys={
            BreakerScope.ACTION: decision.action_id,
            BreakerScope.CHANNEL: decision.channel_id,
            BreakerScope.MODEL: decision.model_name,
        },
        starts={scope.scope: start for scope, start in to_check},
        mix_channel_id=decision.channel_id,
    )
    for scope, window_start in to_check:
        trip = _trip_for_scope(scope, decision, windows, window_start, config, now)
        if trip is not None:
            cause, detail, data = trip
            breaker_open(scope=scope.scope, key=scope.key, cause=cause, detail=detail, data=data)


def _breakers_of(scopes: list[_Scope]) -> dict[tuple[str, str], Breaker]:
    """Return the existing breakers of the scopes, read in one query, by (scope, key)."""
    if not scopes:
        return {}
    matches = Q()
    for scope in scopes:
        matches |= Q(scope=scope.scope, key=scope.key)
    return {(breaker.scope, breaker.key): breaker for breaker in Breaker.objects.filter(matches)}


def _trip_for_scope(
    scope: _Scope,
    decision: Decision,
    windows: dict[str, dict],
    window_start: datetime,
    config,
    now: datetime,
) -> tuple[str, str, dict] | None:
    """Return the first check that trips for a closed breaker: (cause, detail, figures), or None."""
    baseline_end = now - timedelta(minutes=config.breaker_window_minutes)
    baseline_start = baseline_end - timedelta(days=config.mix_baseline_days)
    stats = windows[scope.scope]

    trip = _error_rate_trip(scope, stats, config)
    if trip is None and scope.scope in (BreakerScope.ACTION, BreakerScope.MODEL):
        stats = stats | scope_baseline(scope.filters, baseline_start, baseline_end)
        trip = _confidence_trip(scope, stats, config)
    if trip is None and scope.scope == BreakerScope.ACTION:
        mix = windows["mix"] | mix_baseline(
            channel_id=decision.channel_id,
            action_id=decision.action_id,
            baseline_start=baseline_start,
            baseline_end=baseline_end,
        )
        trip = _decision_mix_trip(scope, decision.channel.code, mix, config)
    return trip


def _window_start(breaker: Breaker | None, config, now: datetime) -> datetime:
    # The window starts no earlier than the breaker's last close, so the errors that opened
    # it do not open it again right after a trial passed or someone closed it.
    start = now - timedelta(minutes=config.breaker_window_minutes)
    if breaker is not None and breaker.changed_at is not None and breaker.changed_at > start:
        return breaker.changed_at
    return start


def _error_rate_trip(scope: _Scope, stats: dict, config) -> tuple[str, str, dict] | None:
    counted, errors = stats["window_counted"], stats["window_errors"]
    if counted < config.breaker_min_decisions or counted == 0:
        return None
    # Compare exactly (errors >= threshold * counted) so a rate equal to the threshold trips.
    if Decimal(errors) < config.breaker_error_rate * counted:
        return None
    rate = _rate(errors, counted)
    detail = (
        f"Error rate {rate} ({errors} of {counted} applied decisions) over "
        f"{config.breaker_window_minutes} minutes is at or over {config.breaker_error_rate}."
    )
    data = {
        "errors": errors,
        "decisions": counted,
        "error_rate": str(rate),
        "threshold": str(config.breaker_error_rate),
        "window_minutes": config.breaker_window_minutes,
    }
    return BreakerCause.ERROR_RATE, detail, data


def _confidence_trip(scope: _Scope, stats: dict, config) -> tuple[str, str, dict] | None:
    if (
        stats["window_total"] < config.breaker_min_decisions
        or stats["baseline_total"] < config.breaker_min_decisions
        or stats["window_confidence"] is None
        or stats["baseline_confidence"] is None
    ):
        return None
    window_mean = _decimal(stats["window_confidence"])
    baseline_mean = _decimal(stats["baseline_confidence"])
    if baseline_mean - window_mean < config.confidence_collapse_drop:
        return None
    detail = (
        f"Mean confidence {window_mean} over {config.breaker_window_minutes} minutes is "
        f"{baseline_mean - window_mean} below its {config.mix_baseline_days}-day baseline "
        f"{baseline_mean} (limit {config.confidence_collapse_drop})."
    )
    data = {
        "window_mean": str(window_mean),
        "baseline_mean": str(baseline_mean),
        "drop_limit": str(config.confidence_collapse_drop),
        "window_decisions": stats["window_total"],
        "baseline_decisions": stats["baseline_total"],
    }
    return BreakerCause.CONFIDENCE_COLLAPSE, detail, data


def _decision_mix_trip(
    scope: _Scope, channel_code: str, mix: dict, config
) -> tuple[str, str, dict] | None:
    # Without a baseline share there is nothing to drift from: a new action opens nothing.
    if (
        mix["window_total"] < config.breaker_min_decisions
        or mix["baseline_total"] < config.breaker_min_decisions
        or mix["baseline_action"] == 0
    ):
        return None
    window_share = Decimal(mix["window_action"]) / mix["window_total"]
    baseline_share = Decimal(mix["baseline_action"]) / mix["baseline_total"]
    if window_share < config.mix_drift_factor * baseline_share:
        return None
    detail = (
        f"{scope.key} is {_rate(mix['window_action'], mix['window_total'])} of the decisions on "
        f"{channel_code} over {config.breaker_window_minutes} minutes, against "
        f"{_rate(mix['baseline_action'], mix['baseline_total'])} over the "
        f"{config.mix_baseline_days}-day baseline (limit {config.mix_drift_factor} times)."
    )
    data = {
        "channel": channel_code,
        "window_share": str(_rate(mix["window_action"], mix["window_total"])),
        "baseline_share": str(_rate(mix["baseline_action"], mix["baseline_total"])),
        "drift_factor": str(config.mix_drift_factor),
    } | mix
    return BreakerCause.DECISION_MIX, detail, data


def _judge_trial(breaker: Breaker, config: GuardrailSettings) -> bool:
    """Close a half-open breaker whose trial passed, reopen one whose trial failed.

    The trial is the first `breaker_trial_decisions` decisions of the scope since the trial
    started. Any error among them fails it at once; it passes when all were made without one.
    Return whether the breaker changed.
    """
    if breaker.trial_started_at is None:
        return False
    trial = list(_trial_decisions(breaker)[: config.breaker_trial_decisions])
    errors = [decision.pk for decision in trial if decision.is_error]
    data = {"trial_decisions": [decision.pk for decision in trial], "errors": errors}

    if errors:
        to_state, cause = BreakerState.OPEN, BreakerCause.TRIAL_FAILED
        detail = f"Trial decision {errors[0]} is an error; the breaker opens again."
    elif len(trial) >= config.breaker_trial_decisions:
        to_state, cause = BreakerState.CLOSED, BreakerCause.TRIAL_PASSED
        detail = f"{len(trial)} trial decisions without an error."
    else:
        return False

    changed = _transition(
        breaker_id=breaker.pk,
        to_state=to_state,
        cause=cause,
        detail=detail,
        data=data,
        from_states={BreakerState.HALF_OPEN},
    )
    return changed.state == to_state


def _rate(part: int, whole: int) -> Decimal:
    if not whole:
        return Decimal("0")
    return (Decimal(part) / whole).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def _decimal(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
