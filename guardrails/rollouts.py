"""Writes for versions and canaries: create and activate versions, run a canary of a candidate
version beside the active one, judge it, roll it back or promote it.

Versions. A version of a model, prompt or recommender is named by the model name decisions
carry (`subject`) and the model version they carry (`label`). A rule set contains draft policy
versions, at most one per policy. The first version of a subject is activated directly;
every later one becomes active only by promotion at the end of a canary.

Arms are sticky. The first time an order meets a running canary (a decision, or an agent
asking which version to use) it is hashed into a bucket and its arm is stored in
CanaryAssignment. From then on the order keeps that arm in that canary for its whole life,
for every action, even when the share changes later. Orders with a priority SKU stay on the
control when the canary excludes priority SKUs.

Routing. `decision_propose` asks `canary_route` which policy version judges a decision:
- A model, prompt or recommender canary changes no rules. It checks that the agent used the
  version of the order's arm: the candidate's label on a control-arm order, or any other
  label on a candidate-arm order, is rejected with 409 `wrong_arm` naming the version to use.
- A rule-set canary judges candidate-arm decisions by the set's draft policy version for the
  judging policy; control-arm decisions by the live version.
- Shadow mode applies nothing of the candidate. For a model-like candidate, decisions with the
  candidate's label on candidate-arm orders are stored as `recommendation_only` with the
  verdict they would have had in `shadow_verdict`, while the active version's decisions on
  the same orders are applied as usual, stored with arm "candidate" and an empty
  `shadow_verdict`. For a rule set, candidate-arm decisions are judged live and the set's
  verdict is stored in `shadow_verdict`. So every decision carries its order's arm, and in a
  shadow canary the candidate's own decisions are those with a `shadow_verdict`.
- A canary that is not running (paused or ended) routes nothing: decisions are judged as if
  it did not exist, and agents are told no canary applies. The label of a candidate whose
  canary was rolled back or stopped, is paused, or does not cover the decision is rejected
  with 409 `version_not_active`, so a rolled-back candidate cannot keep acting. Other labels
  pass: drafts never canaried, the active version, retired versions (agents still on the
  previous version after a promotion) and labels no version records.

Evaluation. `canary_evaluate` (every 10 minutes through the `canaries_evaluate` task)
compares the arms and stores the result. When the candidate's fulfilment exception rate
exceeds the control's by more than the canary's limit after the minimum sample, the canary
rolls back: it ends, the candidate goes back to draft so it can be fixed and canaried again
under a new label, a critical alert opens, and the candidate's applied decisions on orders
that have not shipped go back to the review queue with the order held (accepting keeps the
change, rejecting undoes it). Shadow canaries never roll back automatically: their
candidate changed nothing, so the orders' outcomes say nothing about it. When the run's days
are over, the canary pauses: "inconclusive" when an arm is below the minimum sample, which
pauses rather than fails, and otherwise "run complete; promote or stop". Late outcomes count
because the comparison is by order: a return recorded a week later changes the next
evaluation, which can still roll back a running or paused canary.

Promotion is a deliberate act with a note. It stores the comparison with the canary, makes the
candidate active and retires the control; for a rule set it publishes the set's policy versions.
"""

import logging
import math
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import Channel

from .models import (
    ActionType,
    Canary,
    CanaryEvent,
    CanaryEventKind,
    CanaryStatus,
    Policy,
    PolicyVersion,
    Version,
    VersionKind,
    VersionStatus,
)
from .rollout_routing import (  # noqa: F401 (re-exported: the routing half of this API)
    CanaryRouting,
    canary_assign,
    canary_assignment_for,
    canary_judge,
    canary_route,
    recommender_version_for,
)
from .rollout_selectors import INCONCLUSIVE, MODEL_KINDS, ROLLBACK, canary_comparison
from .services import audit_record

logger = logging.getLogger(__name__)

SYSTEM_LABEL = "canary-monitor"
ADD_VERSION_PERMISSION = "guardrails.add_version"
CHANGE_VERSION_PERMISSION = "guardrails.change_version"
OPERATE_PERMISSION = "guardrails.operate_canary"
PUBLISH_PERMISSION = "guardrails.publish_policyversion"
MIN_SHARE = Decimal("0.01")
MAX_SHARE = Decimal("0.05")
# A canary runs at most a year; the bound also keeps `now + timedelta(days=...)` in range.
MAX_DAYS = 365
# PostgreSQL's integer column holds up to 2,147,483,647; no canary needs 10 million orders.
MAX_MIN_ORDERS_PER_ARM = 10_000_000
# The product fixes automatic rollback at +0.1 percentage points; a canary may be stricter.
MAX_EXCEPTION_INCREASE_PP = Decimal("0.1")
# Canaries that still hold their candidate: they block another canary of the same subject.
OPEN_STATUSES = (CanaryStatus.RUNNING, CanaryStatus.PAUSED)


class RolloutError(Exception):
    """A version or canary change that cannot be made. `status` is the HTTP status it maps to.

    `field` names the input at fault (for 400s); `data` carries details such as the canary
    that is in the way.
    """

    status = 400

    def __init__(
        self, code: str, message: str, field: str | None = None, data: dict | None = None
    ) -> None:
        self.code = code
        self.message = message
        self.field = field
        self.data = data or {}
        super().__init__(message)


class RolloutForbidden(RolloutError):
    status = 403


class RolloutNotFound(RolloutError):
    status = 404


class RolloutConflict(RolloutError):
    status = 409


# --- Versions -------------------------------------------------------------------------------------


def version_create(
    *,
    kind: str,
    subject: str,
    label: str,
    changelog: str,
    user: AbstractBaseUser,
    action: ActionType | str | None = None,
    config: dict | None = None,
    policy_versions=(),
) -> Version:
    """Record a new draft version with its changelog.

    `action` is an ActionType or its code; `policy_versions` (rule sets only) are
    PolicyVersion rows or ids, drafts, at most one per policy. Raises RolloutForbidden
    without guardrails.add_version and RolloutError naming the field at fault.
    """
    _require(user, ADD_VERSION_PERMISSION, "add versions")
    if kind not in VersionKind.values:
        raise RolloutError(
            "invalid_kind",
            f"Unknown kind {kind!r}; use one of {', '.join(VersionKind.values)}.",
            field="kind",
        )
    subject = _required_text(subject, "subject", max_length=200)
    label = _required_text(label, "label", max_length=100)
    changelog = _required_text(changelog, "changelog", message="Say what changed and why.")
    if config is not None and not isinstance(config, dict):
        raise RolloutError("invalid_config", "Must be a JSON object.", field="config")
    _config_check_storable(config or {})
    action = _action_resolved(action)
    versions = _policy_versions_checked(kind, policy_versions)

    with transaction.atomic():
        if Version.objects.filter(kind=kind, subject=subject, label=label).exists():
            raise _label_taken(kind, subject, label)
        try:
            with transaction.atomic():
                version = Version.objects.create(
                    kind=kind,
                    subject=subject,
                    label=label,
                    action=action,
                    changelog=changelog,
                    config=config or {},
                    created_by=user,
                )
        except IntegrityError as error:
            # Only the unique label is a client's mistake. Any other violation is a fault
            # that must not pass for a duplicate label.
            if not _is_label_unique_violation(error):
                raise
            raise _label_taken(kind, subject, label) from None
        version.policy_versions.set(versions)
        audit_record(
            action="version.created",
            target_type="version",
            target_id=version.pk,
            actor=user,
            reason=changelog,
            after=_version_snapshot(version),
        )
    logger.info(
        "version created",
        extra={"version": version.pk, "kind": kind, "subject": subject, "label": label},
    )
    return version


def version_activate(*, version_id: int, user: AbstractBaseUser, note: str) -> Version:
    """Make the first version of a subject active, without a canary.

    Raises RolloutConflict in three cases. The subject already has an active version, because
    a new version goes live through a canary and its promotion. A running or paused canary
    covers the subject, because its promotion would retire a version it never compared. Or
    the version is not a draft. Activating a rule set publishes its policy versions, which
    also needs guardrails.publish_policyversion.
    """
    _require(user, CHANGE_VERSION_PERMISSION, "activate versions")
    note = _required_text(note, "note", message="Say why this version goes live.")

    with transaction.atomic():
        version = _version_lock(version_id)
        _subject_lock(version)
        if version.status != VersionStatus.DRAFT:
            raise RolloutConflict(
                "not_draft",
                f"{version} is {version.get_status_display().lower()}; only a draft can be "
                "activated.",
            )
        active = _active_version(version.kind, version.subject, exclude=version)
        if active is not None:
            raise RolloutConflict(
                "canary_required",
                f"{active} is active; start a canary of {version.label} and promote it instead.",
                data={"active": active.pk},
            )
        canary = (
            Canary.objects.filter(
                candidate__kind=version.kind,
                candidate__subject=version.subject,
                status__in=OPEN_STATUSES,
            )
            .order_by("pk")
            .first()
        )
        if canary is not None:
            raise RolloutConflict(
                "canary_open",
                f"Canary {canary.name} ({canary.get_status_display().lower()}) covers "
                f"{version.subject}; promote or stop it before activating {version.label}.",
                data={"canary": canary.pk},
            )
        if version.kind == VersionKind.RULE_SET:
            _require(user, PUBLISH_PERMISSION, "publish policy versions")
            _rule_set_publish(version, user)

        before = _version_snapshot(version)
        _version_set_status(version, VersionStatus.ACTIVE)
        audit_record(
            action="version.activated",
            target_type="version",
            target_id=version.pk,
            actor=user,
            reason=note,
            before=before,
            after=_version_snapshot(version),
        )
    logger.info("version activated", extra={"version": version.pk})
    return version


# --- Canary lifecycle -----------------------------------------------------------------------------


def canary_start(
    *,
    candidate_id: int,
    user: AbstractBaseUser,
    name: str = "",
    share: Decimal | str = Decimal("0.05"),
    shadow: bool = False,
    action: ActionType | str | None = None,
    channel: Channel | str | None = None,
    exclude_priority_skus: bool = False,
    days: int = 14,
    min_orders_per_arm: int = 1000,
    max_exception_increase_pp: Decimal | str = Decimal("0.100"),
) -> Canary:
    """Start a canary of a draft version beside the active version of its subject.

    `action` and `channel` (rows or codes) narrow the decisions that take part. `days` is
    1 to MAX_DAYS, `min_orders_per_arm` 1 to MAX_MIN_ORDERS_PER_ARM, and
    `max_exception_increase_pp` more than 0 and at most MAX_EXCEPTION_INCREASE_PP. Raises
    RolloutError for bad settings (field named), RolloutConflict when the candidate is not
    a draft or another running or paused canary covers the same subject or policy.
    """
    _require(user, OPERATE_PERMISSION, "start canaries")
    share = _share_checked(share)
    days = _int_checked(days, "days", maximum=MAX_DAYS)
    min_orders_per_arm = _int_checked(
        min_orders_per_arm, "min_orders_per_arm", maximum=MAX_MIN_ORDERS_PER_ARM
    )
    max_pp = _threshold_checked(max_exception_increase_pp)
    action = _action_resolved(action)
    channel = _channel_resolved(channel)

    with transaction.atomic():
        try:
            candidate = _version_lock(candidate_id)
        except RolloutNotFound as error:
            # The id comes from the body, not the URL, so an unknown one is invalid input
            # (400 naming the field), as an unknown decision is for an error label.
            raise RolloutError(error.code, error.message, field="candidate") from None
        _subject_lock(candidate)
        if candidate.status != VersionStatus.DRAFT:
            raise RolloutConflict(
                "not_draft",
                f"{candidate} is {candidate.get_status_display().lower()}; only a draft can "
                "be a canary's candidate.",
            )
        _check_no_open_canary(candidate)
        if candidate.kind == VersionKind.RULE_SET:
            _check_still_drafts(candidate)

        now = timezone.now()
        canary = Canary.objects.create(
            name=(name or "").strip()[:200] or f"{candidate} canary",
            candidate=candidate,
            control=_active_version(candidate.kind, candidate.subject),
            action=action,
            channel=channel,
            share=share,
            shadow=bool(shadow),
            exclude_priority_skus=bool(exclude_priority_skus),
            salt=secrets.token_hex(8),
            days=days,
            min_orders_per_arm=min_orders_per_arm,
            max_exception_increase_pp=max_pp,
            status=CanaryStatus.RUNNING,
            started_at=now,
            ends_at=now + timedelta(days=days),
            created_by=user,
        )
        _version_set_status(candidate, VersionStatus.CANARY)
        _record(
            canary,
            CanaryEventKind.STARTED,
            user=user,
            detail=f"{candidate} gets {_percent_text(share)} % of orders for {days} days.",
            before=None,
        )
    return canary


def canary_set_share(
    *, canary_id: int, share: Decimal | str, user: AbstractBaseUser, note: str = ""
) -> Canary:
    """Change the share of new orders sent to the candidate; assigned orders keep their arm.

    Raises RolloutConflict "unchanged" when the share already has that value.
    """
    _require(user, OPERATE_PERMISSION, "change canaries")
    share = _share_checked(share)

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        _check_open(canary, "change its share")
        previous = canary.share
        if share == previous:
            # Rejected rather than recorded, because an entry "from 3 % to 3 %" is noise.
            raise RolloutConflict(
                "unchanged",
                f"The share is already {_percent_text(previous)} %; give a different share.",
            )
        before = _canary_snapshot(canary)
        canary.share = share
        canary.save(update_fields=["share"])
        was, now = f"{_percent_text(previous)} %", f"{_percent_text(share)} %"
        _record(
            canary,
            CanaryEventKind.SHARE_CHANGED,
            user=user,
            detail=f"Share changed from {was} to {now}. {note}".strip(),
            before=before,
            # Percentages, as in the detail. The stored share has 4 places and the input
            # often fewer, so raw values would mix formats.
            data={"from": was, "to": now},
        )
    return canary


def canary_pause(*, canary_id: int, user: AbstractBaseUser | None = None, reason: str) -> Canary:
    """Pause a running canary; `user=None` is the canary monitor.

    While paused, no decision is routed by the canary: every order gets the active version.
    """
    if user is not None:
        _require(user, OPERATE_PERMISSION, "pause canaries")
    reason = _required_text(reason, "reason", message="Say why the canary pauses.")

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        if canary.status != CanaryStatus.RUNNING:
            raise RolloutConflict(
                "not_running",
                f"Canary {canary.name} is {canary.get_status_display().lower()}; only a running "
                "canary can be paused.",
            )
        before = _canary_snapshot(canary)
        canary.status = CanaryStatus.PAUSED
        canary.save(update_fields=["status"])
        _record(canary, CanaryEventKind.PAUSED, user=user, detail=reason, before=before)
    return canary


def canary_resume(
    *, canary_id: int, user: AbstractBaseUser, note: str = "", days: int | None = None
) -> Canary:
    """Resume a paused canary. `days` (1 to MAX_DAYS) restarts the run from now.

    A canary whose run is over needs `days`, or the next evaluation would pause it again.
    """
    _require(user, OPERATE_PERMISSION, "resume canaries")
    if days is not None:
        days = _int_checked(days, "days", maximum=MAX_DAYS)

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        if canary.status != CanaryStatus.PAUSED:
            raise RolloutConflict(
                "not_paused",
                f"Canary {canary.name} is {canary.get_status_display().lower()}; only a paused "
                "canary can be resumed.",
            )
        now = timezone.now()
        if days is None and canary.ends_at is not None and canary.ends_at <= now:
            raise RolloutError(
                "run_over",
                f"The canary's run ended at {canary.ends_at:%Y-%m-%d %H:%M} UTC; give the "
                "number of days to run on.",
                field="days",
            )
        before = _canary_snapshot(canary)
        canary.status = CanaryStatus.RUNNING
        fields = ["status"]
        if days is not None:
            canary.ends_at = now + timedelta(days=days)
            fields.append("ends_at")
        canary.save(update_fields=fields)
        _record(
            canary,
            CanaryEventKind.RESUMED,
            user=user,
            detail=note or "Resumed.",
            before=before,
            data={"days": days} if days is not None else None,
        )
    return canary


def canary_promote(*, canary_id: int, user: AbstractBaseUser, note: str) -> Canary:
    """Make the candidate the active version and end the canary, with the comparison attached.

    Allowed from running or paused. The control (and any other active version of the
    subject) is retired. A rule set's policy versions are published as live, which needs
    guardrails.publish_policyversion as well. Raises RolloutConflict when the candidate's
    exception rate exceeds the limit (stop the canary instead) or a set's policy version
    was published outside the canary.
    """
    _require(user, OPERATE_PERMISSION, "promote canaries")
    note = _required_text(note, "note", message="Say why the candidate is promoted.")

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        _check_open(canary, "be promoted")
        candidate = _version_lock(canary.candidate_id)
        if candidate.kind == VersionKind.RULE_SET:
            _require(user, PUBLISH_PERMISSION, "publish the rule set's policy versions")
        comparison = canary_comparison(canary)
        if comparison["outcome"] == ROLLBACK and not canary.shadow:
            raise RolloutConflict(
                "exceeds_limit",
                "The candidate's fulfilment exception rate exceeds the control's by more than "
                f"{canary.max_exception_increase_pp} pp; stop the canary instead.",
                data={"comparison": comparison},
            )

        before = _canary_snapshot(canary)
        retired = _subject_retire(candidate)
        if candidate.kind == VersionKind.RULE_SET:
            _rule_set_publish(candidate, user, promoted_canary=canary)
        _version_set_status(candidate, VersionStatus.ACTIVE)
        _canary_end(canary, CanaryStatus.PROMOTED, user=user, reason=note, result=comparison)
        _record(
            canary,
            CanaryEventKind.PROMOTED,
            user=user,
            detail=note,
            before=before,
            data={"comparison": comparison, "retired": retired},
        )
    return canary


def canary_stop(*, canary_id: int, user: AbstractBaseUser, note: str) -> Canary:
    """End a canary without promotion; the candidate goes back to draft."""
    _require(user, OPERATE_PERMISSION, "stop canaries")
    note = _required_text(note, "note", message="Say why the canary stops.")

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        _check_open(canary, "be stopped")
        comparison = canary_comparison(canary)
        before = _canary_snapshot(canary)
        _version_set_status(_version_lock(canary.candidate_id), VersionStatus.DRAFT)
        _canary_end(canary, CanaryStatus.STOPPED, user=user, reason=note, result=comparison)
        _record(
            canary,
            CanaryEventKind.STOPPED,
            user=user,
            detail=note,
            before=before,
            data={"comparison": comparison},
        )
    return canary


def canary_rollback(*, canary_id: int, evaluation: dict) -> Canary:
    """Roll a canary back after its candidate raised fulfilment exceptions; a system action.

    The canary ends as rolled back with the figures in words. The candidate returns to draft,
    so once fixed it can be canaried again under a new label. A critical alert opens. The
    candidate arm's applied decisions on orders not yet shipped go back to review with the
    order held, and decisions still queued stay in their queue. A canary that has already
    ended is returned unchanged, so a second evaluation cannot roll back twice.
    """
    from .rollout_rollback import (
        candidate_decisions_requeue,
        rollback_alert_raise,
        rollback_figures,
    )

    with transaction.atomic():
        canary = _canary_lock(canary_id)
        if canary.status not in OPEN_STATUSES:
            return canary
        before = _canary_snapshot(canary)
        figures = rollback_figures(canary, evaluation)
        _version_set_status(_version_lock(canary.candidate_id), VersionStatus.DRAFT)
        _canary_end(
            canary,
            CanaryStatus.ROLLED_BACK,
            user=None,
            reason=figures["summary"],
            result=evaluation,
        )
        figures["decisions"] = candidate_decisions_requeue(canary)
        _record(
            canary,
            CanaryEventKind.ROLLED_BACK,
            user=None,
            detail=figures["summary"],
            before=before,
            data=figures,
        )
        rollback_alert_raise(canary, figures)
    logger.warning(
        "canary rolled back",
        extra={
            "canary": canary.pk,
            "difference_pp": figures["difference_pp"],
            "requeued": figures["decisions"]["requeued"],
        },
    )
    return canary


# --- Evaluation -----------------------------------------------------------------------------------


def canary_evaluate(*, canary_id: int, now: datetime | None = None) -> dict:
    """Compare the arms, store the evaluation and act on it; return the evaluation.

    Rolls back a running or paused canary whose outcome is "rollback" (never a shadow one).
    Pauses a running canary whose run is over: inconclusive or complete. An ended canary is
    only measured. The canary row stays locked throughout, so two workers evaluating at the
    same time act once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        canary = _canary_lock(canary_id)
        evaluation = {
            **canary_comparison(canary),
            "evaluated_at": now.isoformat(),
            "automatic_rollback": not canary.shadow,
            "action_taken": "none",
        }
        if canary.status in OPEN_STATUSES:
            evaluation["action_taken"] = _evaluation_act(canary, evaluation, now)

        canary.refresh_from_db()
        canary.last_evaluation = evaluation
        canary.last_evaluated_at = now
        canary.save(update_fields=["last_evaluation", "last_evaluated_at"])
    logger.info(
        "canary evaluated",
        extra={
            "canary": canary.pk,
            "outcome": evaluation["outcome"],
            "action_taken": evaluation["action_taken"],
        },
    )
    return evaluation


def canaries_evaluate(*, now: datetime | None = None) -> list[dict]:
    """Evaluate every running or paused canary; return their evaluations.

    One canary failing is logged and does not stop the others.
    """
    ids = list(
        Canary.objects.filter(status__in=OPEN_STATUSES).order_by("pk").values_list("pk", flat=True)
    )
    evaluations = []
    for canary_id in ids:
        try:
            evaluations.append(canary_evaluate(canary_id=canary_id, now=now))
        except Exception:
            logger.exception("canary evaluation failed", extra={"canary": canary_id})
    return evaluations


def _evaluation_act(canary: Canary, evaluation: dict, now: datetime) -> str:
    if evaluation["outcome"] == ROLLBACK and not canary.shadow:
        # Set before the rollback stores the evaluation as the canary's result.
        evaluation["action_taken"] = "rolled_back"
        canary_rollback(canary_id=canary.pk, evaluation=evaluation)
        return "rolled_back"
    if canary.status != CanaryStatus.RUNNING or canary.ends_at is None or now < canary.ends_at:
        return "none"
    if evaluation["outcome"] == INCONCLUSIVE:
        control, candidate = evaluation["control"]["orders"], evaluation["candidate"]["orders"]
        reason = (
            f"Ran {canary.days} days with too little data ({candidate:,} candidate and "
            f"{control:,} control orders, {canary.min_orders_per_arm:,} needed in each arm); "
            "inconclusive."
        )
    else:
        reason = "Run complete; promote or stop."
    canary_pause(canary_id=canary.pk, user=None, reason=reason)
    return "paused"


# --- Checks ---------------------------------------------------------------------------------------


def _require(user: AbstractBaseUser | None, permission: str, what: str) -> None:
    if user is None or not user.has_perm(permission):
        raise RolloutForbidden("forbidden", f"You do not have permission to {what}.")


def _required_text(
    value: Any, field: str, *, max_length: int | None = None, message: str = ""
) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise RolloutError("required", message or f"Enter the {field}.", field=field)
    if max_length is not None and len(text) > max_length:
        raise RolloutError(
            "too_long", f"At most {max_length} characters; got {len(text)}.", field=field
        )
    return text


def _share_checked(share: Any) -> Decimal:
    # One message for every way a share can be wrong, so the API and the page agree.
    value = _decimal_or_none(share)
    if (
        value is None
        or not MIN_SHARE <= value <= MAX_SHARE
        or value != value.quantize(Decimal("0.0001"))
    ):
        raise RolloutError(
            "invalid_share",
            f"The share must be from {MIN_SHARE} to {MAX_SHARE} (1 to 5 % of orders), with at "
            f"most 4 decimal places; got {_shown(share)}.",
            field="share",
        )
    return value


def _decimal_or_none(value: Any) -> Decimal | None:
    """Return `value` as a finite Decimal, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _decimal_checked(value: Any, field: str) -> Decimal:
    number = _decimal_or_none(value)
    if number is None or number < 0:
        raise RolloutError(
            "invalid_number", f"Must be a number of 0 or more; got {_shown(value)}.", field
        )
    return number


def _shown(value: Any) -> str:
    """Return an input as a user sees it in a message: plain text, never a Python repr."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, Decimal):
        # Normalised, so Decimal("-1.0000") reads -1; very large exponents stay short.
        text = f"{value.normalize():f}" if abs(value.adjusted()) < 20 else str(value)
    else:
        text = str(value).strip()
    # A 400-digit value would drown the message.
    return text if len(text) <= 24 else f"{text[:20]}..."


def _int_checked(value: Any, field: str, *, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise RolloutError(
            "invalid_number",
            f"Must be a whole number from 1 to {maximum:,}; got {_shown(value)}.",
            field,
        )
    return value


def _threshold_checked(value: Any) -> Decimal:
    field = "max_exception_increase_pp"
    number = _decimal_checked(value, field)
    if not 0 < number <= MAX_EXCEPTION_INCREASE_PP:
        raise RolloutError(
            "invalid_threshold",
            f"The rollback threshold must be more than 0 and at most {MAX_EXCEPTION_INCREASE_PP} "
            f"percentage points; got {_shown(number)}.",
            field=field,
        )
    if number != number.quantize(Decimal("0.001")):
        raise RolloutError(
            "invalid_threshold", "The rollback threshold has at most 3 decimal places.", field
        )
    return number


def _action_resolved(action: ActionType | str | None) -> ActionType | None:
    if action is None or action == "" or isinstance(action, ActionType):
        return action or None
    found = ActionType.objects.filter(code=action).first() if isinstance(action, str) else None
    if found is None:
        raise RolloutError("unknown_action", f"Unknown action {action!r}.", field="action")
    return found


def _channel_resolved(channel: Channel | str | None) -> Channel | None:
    if channel is None or channel == "" or isinstance(channel, Channel):
        return channel or None
    found = Channel.objects.filter(code=channel).first() if isinstance(channel, str) else None
    if found is None:
        raise RolloutError("unknown_channel", f"Unknown channel {channel!r}.", field="channel")
    return found


def _policy_versions_checked(kind: str, policy_versions) -> list[PolicyVersion]:
    ids = [getattr(item, "pk", item) for item in policy_versions or ()]
    if kind != VersionKind.RULE_SET:
        if ids:
            raise RolloutError(
                "not_a_rule_set",
                "Only rule sets hold policy versions.",
                field="policy_versions",
            )
        return []
    if not ids:
        raise RolloutError(
            "required", "Choose at least one draft policy version.", field="policy_versions"
        )

    versions = list(PolicyVersion.objects.select_related("policy").filter(pk__in=ids))
    missing = sorted(set(ids) - {version.pk for version in versions}, key=str)
    if missing:
        raise RolloutError(
            "unknown_policy_version",
            f"No policy version has the id {missing[0]!r}.",
            field="policy_versions",
        )
    published = [version for version in versions if version.published_at is not None]
    if published:
        raise RolloutError(
            "published_policy_version",
            f"{published[0]} is published; a rule set holds drafts only.",
            field="policy_versions",
        )
    policies = [version.policy_id for version in versions]
    if len(set(policies)) != len(policies):
        raise RolloutError(
            "two_versions_of_one_policy",
            "A rule set holds at most one version of each policy.",
            field="policy_versions",
        )
    return versions


def _check_no_open_canary(candidate: Version) -> None:
    if candidate.kind == VersionKind.RULE_SET:
        policies = candidate.policy_versions.values("policy_id")
        overlap = Q(
            candidate__kind=VersionKind.RULE_SET,
            candidate__policy_versions__policy_id__in=policies,
        )
    else:
        overlap = Q(candidate__kind__in=MODEL_KINDS, candidate__subject=candidate.subject)
    other = (
        Canary.objects.filter(overlap, status__in=OPEN_STATUSES)
        .exclude(candidate=candidate)
        .order_by("pk")
        .first()
    )
    if other is not None:
        raise RolloutConflict(
            "canary_open",
            f"Canary {other.name} ({other.get_status_display().lower()}) already covers "
            f"{candidate.subject}; promote, stop or wait for it first.",
            data={"canary": other.pk},
        )


def _check_still_drafts(rule_set: Version) -> None:
    published = rule_set.policy_versions.filter(published_at__isnull=False).first()
    if published is not None:
        raise RolloutConflict(
            "policy_version_published",
            f"{published} was published outside the rule set; create a new rule set.",
            data={"policy_version": published.pk},
        )


def _check_open(canary: Canary, what: str) -> None:
    if canary.status not in OPEN_STATUSES:
        raise RolloutConflict(
            "canary_ended",
            f"Canary {canary.name} is {canary.get_status_display().lower()} and cannot {what}.",
        )


# A lone surrogate (U+D800 to U+DFFF outside a pair) cannot be encoded as UTF-8, so a JSON
# response that carries it fails to render. PostgreSQL's jsonb rejects it and NUL, and
# SQLite's JSON check rejects NaN and Infinity, which are not JSON.
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def _config_check_storable(config: dict) -> None:
    """Raise RolloutError naming `config` when a key or value cannot be stored as JSON text.

    The API's parser already rejects NUL, NaN and Infinity, but the admin's form parses the
    config with Python's json module, which accepts them.
    """
    first = next(_config_problems(config, "config"), None)
    if first is not None:
        path, problem = first
        raise RolloutError("invalid_config", f"{path}: {problem}", field="config")


def _config_problems(node: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        problem = _text_problem(node)
        if problem:
            yield path, problem
    elif isinstance(node, float) and not math.isfinite(node):
        yield path, f"{node} is not a JSON number; use a finite number or a string."
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _config_problems(item, f"{path}[{index}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            key_path = f"{path}.{_escaped(str(key))}"
            problem = _text_problem(str(key))
            if problem:
                yield key_path, f"The key {problem[0].lower()}{problem[1:]}"
            else:
                yield from _config_problems(value, key_path)


def _text_problem(text: str) -> str | None:
    match = _UNSTORABLE_CHARACTER.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "Contains a NUL character (\\u0000), which the database cannot store."
    return (
        f"Contains a lone surrogate (U+{ord(match.group()):04X}), which is not valid Unicode "
        "text. Send the whole character, as a surrogate pair or unescaped."
    )


def _escaped(text: str) -> str:
    """Return text with NUL and surrogates as \\uXXXX escapes, so an error can show it."""
    return _UNSTORABLE_CHARACTER.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


_LABEL_CONSTRAINT = "version_unique_label"


def _is_label_unique_violation(error: IntegrityError) -> bool:
    """Return whether `error` is a duplicate (kind, subject, label), not another violation."""
    diagnostics = getattr(error.__cause__, "diag", None)
    if diagnostics is not None:
        # psycopg names the violated constraint on PostgreSQL.
        return diagnostics.constraint_name == _LABEL_CONSTRAINT
    # SQLite names the columns instead: "UNIQUE constraint failed: guardrails_version.kind,
    # guardrails_version.subject, guardrails_version.label".
    message = str(error)
    return message.startswith("UNIQUE constraint failed") and all(
        f"guardrails_version.{column}" in message for column in ("kind", "subject", "label")
    )


def _label_taken(kind: str, subject: str, label: str) -> RolloutError:
    return RolloutError(
        "label_taken",
        f"{VersionKind(kind).label} {subject} already has a version {label!r}; "
        "choose another label.",
        field="label",
    )


# --- Locks and state changes ----------------------------------------------------------------------


def _canary_lock(canary_id: int) -> Canary:
    canary = (
        Canary.objects.select_for_update(of=("self",))
        .select_related("candidate", "control")
        .filter(pk=canary_id)
        .first()
    )
    if canary is None:
        raise RolloutNotFound("canary_not_found", f"Canary {canary_id} does not exist.")
    return canary


def _version_lock(version_id: int) -> Version:
    try:
        version = Version.objects.select_for_update().filter(pk=version_id).first()
    except (ValueError, TypeError):
        version = None
    if version is None:
        raise RolloutNotFound("version_not_found", f"Version {version_id} does not exist.")
    return version


def _subject_lock(version: Version) -> None:
    """Lock every version of the subject (and a rule set's policies), in pk order.

    Two operators starting canaries of the same subject at once then take turns, so the
    one-open-canary check finds the other's canary.
    """
    kinds = MODEL_KINDS if version.kind in MODEL_KINDS else (version.kind,)
    list(
        Version.objects.select_for_update()
        .filter(kind__in=kinds, subject=version.subject)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if version.kind == VersionKind.RULE_SET:
        policy_ids = version.policy_versions.values("policy_id")
        list(
            Policy.objects.select_for_update()
            .filter(pk__in=policy_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _active_version(kind: str, subject: str, *, exclude: Version | None = None) -> Version | None:
    versions = Version.objects.filter(kind=kind, subject=subject, status=VersionStatus.ACTIVE)
    if exclude is not None:
        versions = versions.exclude(pk=exclude.pk)
    return versions.order_by("-activated_at", "-pk").first()


def _version_set_status(version: Version, status: str) -> None:
    version.status = status
    fields = ["status"]
    if status == VersionStatus.ACTIVE:
        version.activated_at = timezone.now()
        fields.append("activated_at")
    if status == VersionStatus.RETIRED:
        version.retired_at = timezone.now()
        fields.append("retired_at")
    version.save(update_fields=fields)


def _subject_retire(candidate: Version) -> list[int]:
    """Retire the subject's active versions other than the candidate; return their ids."""
    retired = []
    active = Version.objects.filter(
        kind=candidate.kind, subject=candidate.subject, status=VersionStatus.ACTIVE
    ).exclude(pk=candidate.pk)
    for version in active.order_by("pk"):
        _version_set_status(version, VersionStatus.RETIRED)
        retired.append(version.pk)
    return retired


def _rule_set_publish(
    rule_set: Version, user: AbstractBaseUser, *, promoted_canary: Canary | None = None
) -> None:
    """Publish each of the set's policy versions as its policy's live version.

    `promoted_canary` is the canary whose promotion publishes them: its hold on the policy
    versions does not block publishing, while any other running or paused canary's does.
    """
    from django.core.exceptions import PermissionDenied, ValidationError

    from .policies import CANARY_HOLDS_VERSION, policy_version_publish

    for version in rule_set.policy_versions.select_related("policy").order_by("policy_id"):
        live_id = Policy.objects.filter(pk=version.policy_id).values_list(
            "live_version_id", flat=True
        )[0]
        if version.published_at is not None and live_id == version.pk:
            continue
        try:
            policy_version_publish(
                version=version,
                user=user,
                promoted_canary_id=promoted_canary.pk if promoted_canary is not None else None,
            )
        except PermissionDenied:
            raise RolloutForbidden(
                "forbidden", "You do not have permission to publish policy versions."
            ) from None
        except ValidationError as error:
            codes = [item.code for item in getattr(error, "error_dict", {}).get("version", ())]
            if CANARY_HOLDS_VERSION in codes:
                # Activating a rule set that shares a policy version with another's canary.
                raise RolloutConflict(
                    "canary_open", error.messages[0], data={"policy_version": version.pk}
                ) from None
            raise RolloutConflict(
                "policy_version_published",
                f"{version} was published outside the rule set; create a new rule set.",
                data={"policy_version": version.pk},
            ) from None


def _canary_end(
    canary: Canary, status: str, *, user: AbstractBaseUser | None, reason: str, result: dict
) -> None:
    canary.status = status
    canary.ended_at = timezone.now()
    canary.ended_by = user
    canary.end_reason = reason
    canary.result = result
    canary.save(update_fields=["status", "ended_at", "ended_by", "end_reason", "result"])


def _record(
    canary: Canary,
    kind: str,
    *,
    user: AbstractBaseUser | None,
    detail: str,
    before: dict | None,
    data: dict | None = None,
) -> None:
    """Write the canary event, the audit entry with before and after, and the log line."""
    CanaryEvent.objects.create(canary=canary, kind=kind, detail=detail, data=data or {}, actor=user)
    audit_record(
        action=f"canary.{kind}",
        target_type="canary",
        target_id=canary.pk,
        actor=user,
        system_label="" if user is not None else SYSTEM_LABEL,
        reason=detail,
        before=before,
        after=_canary_snapshot(canary),
    )
    logger.info(
        "canary changed",
        extra={
            "canary": canary.pk,
            "event": kind,
            "status": canary.status,
            "user": user.pk if user is not None else None,
        },
    )


def _canary_snapshot(canary: Canary) -> dict:
    # Read the versions' statuses afresh: the services change them through other instances.
    ids = [pk for pk in (canary.candidate_id, canary.control_id) if pk is not None]
    statuses = dict(Version.objects.filter(pk__in=ids).values_list("pk", "status"))
    return {
        "status": canary.status,
        "share": str(canary.share),
        "shadow": canary.shadow,
        "ends_at": canary.ends_at.isoformat() if canary.ends_at else None,
        "candidate": {"id": canary.candidate_id, "status": statuses.get(canary.candidate_id)},
        "control": (
            {"id": canary.control_id, "status": statuses.get(canary.control_id)}
            if canary.control_id
            else None
        ),
    }


def _version_snapshot(version: Version) -> dict:
    return {
        "kind": version.kind,
        "subject": version.subject,
        "label": version.label,
        "status": version.status,
        "action": version.action.code if version.action_id else None,
        "policy_versions": sorted(version.policy_versions.values_list("pk", flat=True)),
    }


def _percent_text(share: Decimal) -> str:
    """Format a share as a percentage without trailing zeros, e.g. 0.05 -> "5"."""
    text = f"{Decimal(share) * 100:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
