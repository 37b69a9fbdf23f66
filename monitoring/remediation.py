"""The one-button remediations an alert rule offers as the first step of its runbook.

`open_breaker` opens the circuit breaker of an action type, so its AI proposals go to human
review; the alert's monitoring.change_alert permission is enough for it. `hold_channel` holds
every new order of a channel for a person, and needs catalog.change_channel as well, like
holding the channel in the admin. `escalate_queue` hands every item of a review queue that
is older than the rule's threshold (in seconds) to the queue's escalation role, as the SLA
sweep does when a deadline passes; monitoring.change_alert is enough for it too.
`pause_canaries` pauses the running canaries (or the one whose id is the target), so every
order gets the active versions again while someone looks; it needs guardrails.operate_canary
as well. The target is the rule's `remediation_target`, or else taken from the scope the
alert was raised for.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied

from .models import Alert, AlertRule, Remediation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemediationOutcome:
    """The outcome of a remediation: a sentence for the history and the figures for the audit."""

    summary: str
    data: dict
    before: dict = field(default_factory=dict)


# The target of a pause_canaries rule that names no canary.
ALL_CANARIES = "all"


def remediation_target(*, rule: AlertRule, alert: Alert | None = None) -> str:
    """Return the action code, channel code or queue kind the remediation acts on; "" if unknown."""
    if rule.remediation_target:
        return rule.remediation_target
    if rule.remediation == Remediation.PAUSE_CANARIES:
        return ALL_CANARIES
    if alert is None:
        return ""

    scope = (alert.data or {}).get("scope") or {}
    if rule.remediation == Remediation.HOLD_CHANNEL:
        return scope.get("channel") or ""
    target_label = "queue" if rule.remediation == Remediation.ESCALATE_QUEUE else "action"
    if scope.get("dimension_label") == target_label:
        return scope.get("dimension") or ""
    return ""


def remediation_label(*, rule: AlertRule, alert: Alert | None = None) -> str:
    """Return the button's text, e.g. "Open the circuit breaker of select_carrier"."""
    target = remediation_target(rule=rule, alert=alert) or "(unknown)"
    if rule.remediation == Remediation.OPEN_BREAKER:
        return f"Open the circuit breaker of {target}"
    if rule.remediation == Remediation.ESCALATE_QUEUE:
        age = _duration_text(escalation_age(rule))
        return f"Escalate the {target} queue's items open longer than {age}"
    if rule.remediation == Remediation.PAUSE_CANARIES:
        if target == ALL_CANARIES:
            return "Pause every running canary"
        return f"Pause canary #{target}"
    return f"Hold the orders of channel {target}"


def escalation_age(rule: AlertRule) -> timedelta:
    """Return how old an item must be for `escalate_queue`: the rule's threshold in seconds."""
    return timedelta(seconds=float(rule.threshold))


def _duration_text(span: timedelta) -> str:
    minutes = Decimal(span.total_seconds()) / 60
    if minutes >= 120 and minutes % 60 == 0:
        return f"{minutes / 60:.0f} h"
    return f"{minutes.quantize(Decimal(1))} min"


def remediation_run(*, alert: Alert, user: AbstractBaseUser) -> RemediationOutcome:
    """Carry out the remediation of the alert's rule; raise AlertError when it cannot.

    Call inside the transaction that locked the alert.
    """
    from .services import AlertError

    rule = alert.rule
    target = remediation_target(rule=rule, alert=alert)
    if not target:
        raise AlertError(
            "no_target",
            f"Rule {rule.name!r} names no remediation target and alert #{alert.pk} has none "
            "in its scope; set the rule's remediation target in the admin.",
        )
    if rule.remediation == Remediation.OPEN_BREAKER:
        return _breaker_open(alert=alert, action_code=target, user=user)
    if rule.remediation == Remediation.HOLD_CHANNEL:
        return _channel_hold(alert=alert, channel_code=target, user=user)
    if rule.remediation == Remediation.ESCALATE_QUEUE:
        return _queue_escalate(alert=alert, kind=target, user=user)
    if rule.remediation == Remediation.PAUSE_CANARIES:
        return _canaries_pause(alert=alert, target=target, user=user)
    raise AlertError(
        "no_remediation",
        f"Rule {rule.name!r} has an unknown remediation {rule.remediation!r}; use one of "
        f"{Remediation.values}.",
    )


def _breaker_open(*, alert: Alert, action_code: str, user: AbstractBaseUser) -> RemediationOutcome:
    from guardrails.breakers import breaker_open
    from guardrails.models import ActionType, Breaker, BreakerCause, BreakerScope, BreakerState

    from .services import AlertError

    if not ActionType.objects.filter(code=action_code).exists():
        raise AlertError(
            "target_not_found",
            f"There is no action {action_code!r} whose breaker could be opened; fix the rule's "
            "remediation target.",
            status=404,
        )
    current = (
        Breaker.objects.filter(scope=BreakerScope.ACTION, key=action_code)
        .values_list("state", flat=True)
        .first()
    ) or BreakerState.CLOSED
    if current == BreakerState.OPEN:
        raise AlertError(
            "already_done",
            f"The circuit breaker of {action_code} is already open.",
            status=409,
        )

    breaker = breaker_open(
        scope=BreakerScope.ACTION,
        key=action_code,
        cause=BreakerCause.MANUAL,
        detail=f"Opened from alert #{alert.pk}: {alert.title}",
        user=user,
        data={"alert": alert.pk},
    )
    return RemediationOutcome(
        summary=f"Opened the circuit breaker of {action_code}.",
        data={
            "remediation": Remediation.OPEN_BREAKER,
            "target": action_code,
            "breaker": breaker.pk,
            "state": breaker.state,
        },
        before={"state": current},
    )


def _channel_hold(*, alert: Alert, channel_code: str, user: AbstractBaseUser) -> RemediationOutcome:
    from catalog.models import Channel
    from orders.channel_holds import ChannelAlreadyHeld, ChannelHoldError, channel_orders_hold

    from .services import AlertError

    channel = Channel.objects.filter(code=channel_code).first()
    if channel is None:
        raise AlertError(
            "target_not_found",
            f"There is no channel {channel_code!r} to hold; fix the rule's remediation target.",
            status=404,
        )
    if channel.orders_held:
        raise AlertError(
            "already_done",
            f"The orders of channel {channel_code} are already held"
            + (f": {channel.orders_held_reason}" if channel.orders_held_reason else "."),
            status=409,
        )

    try:
        channel_orders_hold(channel=channel, user=user, reason=f"Alert #{alert.pk}: {alert.title}")
    except PermissionDenied as error:
        raise AlertError("forbidden", str(error), status=403) from error
    except ChannelAlreadyHeld as error:
        raise AlertError("already_done", str(error), status=409) from error
    except ChannelHoldError as error:
        raise AlertError("invalid", str(error)) from error
    return RemediationOutcome(
        summary=f"Held the orders of channel {channel_code}.",
        data={
            "remediation": Remediation.HOLD_CHANNEL,
            "target": channel_code,
            "channel": channel.pk,
        },
        before={"orders_held": False},
    )


def _queue_escalate(*, alert: Alert, kind: str, user: AbstractBaseUser) -> RemediationOutcome:
    from reviews.models import ReviewKind
    from reviews.sla import review_items_escalate_overdue

    from .services import AlertError

    if kind not in ReviewKind.values:
        raise AlertError(
            "target_not_found",
            f"There is no review queue {kind!r} to escalate; fix the rule's remediation target.",
            status=404,
        )
    older_than = escalation_age(alert.rule)
    escalated = review_items_escalate_overdue(
        kind=kind, older_than=older_than, user=user, reason=f"Alert #{alert.pk}: {alert.title}"
    )
    if not escalated:
        raise AlertError(
            "already_done",
            f"No open item of the {kind} queue is older than {_duration_text(older_than)} "
            "without being escalated already.",
            status=409,
        )
    return RemediationOutcome(
        summary=f"Escalated {escalated} item(s) of the {kind} queue open longer than "
        f"{_duration_text(older_than)}.",
        data={
            "remediation": Remediation.ESCALATE_QUEUE,
            "target": kind,
            "older_than_seconds": int(older_than.total_seconds()),
            "escalated": escalated,
        },
        before={"escalated": 0},
    )


def _canaries_pause(*, alert: Alert, target: str, user: AbstractBaseUser) -> RemediationOutcome:
    from guardrails.models import Canary, CanaryStatus
    from guardrails.rollouts import RolloutError, RolloutForbidden, canary_pause

    from .services import AlertError

    canaries = Canary.objects.filter(status=CanaryStatus.RUNNING).order_by("pk")
    if target != ALL_CANARIES:
        if not (target.isascii() and target.isdigit()):
            raise AlertError(
                "target_not_found",
                f"{target!r} is not a canary id; fix the rule's remediation target.",
                status=404,
            )
        canaries = canaries.filter(pk=int(target))
    ids = list(canaries.values_list("pk", flat=True))
    if not ids:
        which = "No canary is" if target == ALL_CANARIES else f"Canary #{target} is not"
        raise AlertError("already_done", f"{which} running; there is nothing to pause.", status=409)

    paused = []
    for canary_id in ids:
        try:
            canary_pause(canary_id=canary_id, user=user, reason=f"Alert #{alert.pk}: {alert.title}")
        except RolloutForbidden as error:
            raise AlertError("forbidden", error.message, status=403) from error
        except RolloutError as error:
            # Another person or the canary monitor ended it meanwhile; pause the others.
            logger.info("canary not paused", extra={"canary": canary_id, "code": error.code})
            continue
        paused.append(canary_id)
    if not paused:
        raise AlertError(
            "already_done", "The canaries ended meanwhile; there is nothing to pause.", status=409
        )
    return RemediationOutcome(
        summary=f"Paused {len(paused)} canary(ies): " + ", ".join(f"#{pk}" for pk in paused) + ".",
        data={"remediation": Remediation.PAUSE_CANARIES, "target": target, "canaries": paused},
        before={"running": ids},
    )
