"""Canary routing inside the decision pipeline: which arm an order is in, which policy version
judges its decisions, and which version an agent should propose with.

`decision_propose` calls `canary_route` after locking the order and `canary_judge` after the
engine's evaluation. The rules (sticky arms, wrong-arm rejections, shadow recording, paused
canaries routing nothing) are described in `guardrails.rollouts`; this module carries them out.
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery

from orders.models import Order, OrderStatus, Shipment

from .engine import INFO, Evaluation, evaluate, rules_from_version
from .models import (
    ActionType,
    Canary,
    CanaryArm,
    CanaryAssignment,
    CanaryStatus,
    PolicyVersion,
    Verdict,
    Version,
    VersionKind,
    VersionStatus,
)
from .rollout_selectors import (
    MODEL_KINDS,
    bucket_for,
    canary_for_decision,
    candidate_bucket_limit,
    order_key,
)
from .selectors import shared_config_read
from .services import DecisionConflict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryRouting:
    """The route of one decision through a canary: its arm and the policy version that judges it.

    `canary` is None when no running canary covers it (then `arm` is ""). `arm` is the
    order's stored arm, also for the active version's decisions on candidate-arm orders of a
    shadow canary. `policy_version` judges the decision. `shadow` means the decision is the
    shadow candidate's: stored as a recommendation with its would-be verdict.
    `shadow_policy_version` is a rule-set candidate's version evaluated beside the live one,
    its verdict stored as shadow_verdict.
    """

    canary: Canary | None
    arm: str
    policy_version: PolicyVersion | None
    shadow: bool = False
    shadow_policy_version: PolicyVersion | None = None


def canary_route(
    *,
    order: Order,
    action: ActionType,
    model_name: str,
    model_version: str,
    policy_version: PolicyVersion | None,
) -> CanaryRouting:
    """Assign the order to an arm of the canary that covers the decision, and route it.

    Call inside decision_propose's transaction with the order locked. `policy_version` is
    the live version that would judge the decision. Raises DecisionConflict (409)
    `wrong_arm` when the model version does not belong to the order's arm, and
    `version_not_active` for the label of a candidate whose canary was rolled back or
    stopped, or of a candidate whose canary is paused.
    """
    policy = policy_version.policy if policy_version is not None else None
    canary = canary_for_decision(
        action=action, channel=order.channel, model_name=model_name, policy=policy
    )
    if canary is None:
        _check_version_may_decide(model_name, model_version)
        return CanaryRouting(canary=None, arm="", policy_version=policy_version)

    arm = canary_assign(canary=canary, order=order).arm
    if canary.candidate.kind == VersionKind.RULE_SET:
        _check_version_may_decide(model_name, model_version)
        return _route_rule_set(canary, arm, policy_version)
    if model_version != canary.candidate.label:
        _check_version_may_decide(model_name, model_version)
    return _route_model(canary, arm, model_version, policy_version)


def canary_judge(
    routing: CanaryRouting, *, evaluation: Evaluation, facts: dict
) -> tuple[str, list[dict], str]:
    """Return the (verdict, reasons, shadow_verdict) a routed decision is stored with."""
    if routing.canary is None:
        return evaluation.verdict, evaluation.reasons, ""
    canary = routing.canary
    reasons = [
        *evaluation.reasons,
        _info(
            "canary",
            f"The order is in the {routing.arm} arm of canary {canary.name}.",
            {"canary": canary.pk, "arm": routing.arm},
        ),
    ]
    if routing.shadow:
        message = (
            f"Shadow candidate {canary.candidate}: recorded with the verdict it would have had "
            f"({evaluation.verdict}), not applied."
        )
        shadow = {"canary": canary.pk, "would_be_verdict": evaluation.verdict}
        reasons.append(_info("canary_shadow", message, shadow))
        return Verdict.RECOMMENDATION_ONLY, reasons, evaluation.verdict
    if routing.shadow_policy_version is not None:
        from .services import FALLBACK_APPROVER

        shadow_evaluation = evaluate(
            rules=rules_from_version(routing.shadow_policy_version),
            facts=facts,
            fallback_approver=FALLBACK_APPROVER,
        )
        message = (
            f"Shadow rule set {canary.candidate} would have judged this "
            f"{shadow_evaluation.verdict}; recorded, not applied."
        )
        data = {
            "canary": canary.pk,
            "policy_version": routing.shadow_policy_version.pk,
            "would_be_verdict": shadow_evaluation.verdict,
        }
        reasons.append(_info("canary_shadow", message, data))
        return evaluation.verdict, reasons, shadow_evaluation.verdict
    return evaluation.verdict, reasons, ""


def canary_assignment_for(*, order: Order, action_code: str, model_name: str) -> dict | None:
    """Tell an agent which version to use for an action on an order; None without a canary.

    Assigns the order to an arm when it is new to the canary. A cancelled or shipped order
    that the canary has not seen gets the control without being assigned, because it can
    get no more decisions and an assignment would only add a sample to the control arm.
    Returns {"canary": id, "name", "kind", "arm", "model_version": the label to propose with
    (None for the control when no active version is recorded, and for rule sets, which
    change no model), "control_model_version", "config": the arm's version config,
    "shadow": bool}.

    In a shadow canary an agent proposes with its active version as usual. For candidate-arm
    orders it also proposes with `model_version`, and that second decision is recorded but
    never applied. Raises RolloutError (field "action") for an unknown action.
    """
    from .rollouts import RolloutError
    from .selectors import action_get

    action = action_get(code=action_code) if isinstance(action_code, str) else None
    if action is None:
        raise RolloutError("unknown_action", f"Unknown action {action_code!r}.", field="action")
    canary = canary_for_decision(action=action, channel=order.channel, model_name=model_name)
    if canary is None:
        return None

    arm = _assignment_arm(canary, order)
    version = canary.candidate if arm == CanaryArm.CANDIDATE else canary.control
    model_version = control_model_version = None
    # A rule set changes no model, so its agents keep proposing with their own version.
    if canary.candidate.kind in MODEL_KINDS:
        model_version = version.label if version is not None else None
        control_model_version = canary.control.label if canary.control_id else None
    return {
        "canary": canary.pk,
        "name": canary.name,
        "kind": canary.candidate.kind,
        "arm": arm,
        "model_version": model_version,
        "control_model_version": control_model_version,
        "config": version.config if version is not None else {},
        "shadow": canary.shadow,
    }


def recommender_version_for(
    *, order: Order, action_code: str, model_name: str, default: str
) -> str:
    """Return the model version a built-in recommender stamps on its proposal for an order.

    The version of the order's arm when a canary covers it, else the subject's active
    version, else `default`. In a shadow canary a built-in proposes once, with the active
    version, so a shadow canary of a built-in recommender records no candidate decisions.
    """
    assignment = canary_assignment_for(order=order, action_code=action_code, model_name=model_name)
    if assignment is not None and assignment["kind"] in MODEL_KINDS:
        key = "control_model_version" if assignment["shadow"] else "model_version"
        if assignment[key]:
            return assignment[key]
    active = (
        Version.objects.filter(
            kind__in=MODEL_KINDS, subject=model_name, status=VersionStatus.ACTIVE
        )
        .values_list("label", flat=True)
        .first()
    )
    return active or default


def canary_assign(*, canary: Canary, order: Order) -> CanaryAssignment:
    """Return the order's arm in the canary, assigning it on first sight.

    The unique (canary, order) row makes the arm stick: a second caller racing the first
    gets the stored row.
    """
    existing = CanaryAssignment.objects.filter(canary=canary, order=order).first()
    if existing is not None:
        return existing

    bucket = bucket_for(order_key(order), canary.salt)
    candidate = bucket < candidate_bucket_limit(canary.share) and not _order_excluded(canary, order)
    try:
        with transaction.atomic():
            return CanaryAssignment.objects.create(
                canary=canary,
                order=order,
                arm=CanaryArm.CANDIDATE if candidate else CanaryArm.CONTROL,
                bucket=bucket,
                share=canary.share,
            )
    except IntegrityError:
        return CanaryAssignment.objects.get(canary=canary, order=order)


def _assignment_arm(canary: Canary, order: Order) -> str:
    """Return the order's stored arm; assign it only when it can still get decisions."""
    stored = (
        CanaryAssignment.objects.filter(canary=canary, order=order)
        .values_list("arm", flat=True)
        .first()
    )
    if stored is not None:
        return stored
    closed = order.status == OrderStatus.CANCELLED or Shipment.objects.filter(order=order).exists()
    if closed:
        return CanaryArm.CONTROL
    with transaction.atomic():
        return canary_assign(canary=canary, order=order).arm


def _order_excluded(canary: Canary, order: Order) -> bool:
    return canary.exclude_priority_skus and order.lines.filter(sku__is_priority=True).exists()


def _route_model(
    canary: Canary, arm: str, model_version: str, policy_version: PolicyVersion | None
) -> CanaryRouting:
    candidate_label = canary.candidate.label
    control_label = canary.control.label if canary.control_id else None
    if model_version == candidate_label:
        if arm == CanaryArm.CONTROL:
            use = control_label or "the active version"
            raise DecisionConflict(
                "wrong_arm",
                f"The order is in the control arm of canary {canary.name}; propose with "
                f"{use}, not the candidate {candidate_label}.",
                data={"canary": canary.pk, "arm": arm, "model_version": control_label},
            )
        return CanaryRouting(
            canary=canary, arm=arm, policy_version=policy_version, shadow=canary.shadow
        )
    if arm == CanaryArm.CANDIDATE and not canary.shadow:
        raise DecisionConflict(
            "wrong_arm",
            f"The order is in the candidate arm of canary {canary.name}; propose with "
            f"{candidate_label}, not {model_version}.",
            data={"canary": canary.pk, "arm": arm, "model_version": candidate_label},
        )
    # The active version's decision, applied as usual. In a shadow canary this happens on
    # candidate-arm orders too, and the decision keeps the order's arm. Its empty
    # shadow_verdict distinguishes it from the shadow candidate's decisions.
    return CanaryRouting(canary=canary, arm=arm, policy_version=policy_version)


def _route_rule_set(
    canary: Canary, arm: str, policy_version: PolicyVersion | None
) -> CanaryRouting:
    if arm == CanaryArm.CONTROL or policy_version is None:
        return CanaryRouting(canary=canary, arm=CanaryArm.CONTROL, policy_version=policy_version)
    candidate_version = _set_version_for_policy(canary.candidate, policy_version.policy_id)
    if canary.shadow:
        return CanaryRouting(
            canary=canary,
            arm=arm,
            policy_version=policy_version,
            shadow_policy_version=candidate_version,
        )
    return CanaryRouting(canary=canary, arm=arm, policy_version=candidate_version)


def _set_version_for_policy(rule_set: Version, policy_id: int) -> PolicyVersion:
    """Return the set's version of the policy, loaded with what evaluation reads."""
    return (
        rule_set.policy_versions.select_related(
            "policy__action", "policy__channel", "approver_group", "escalation_group"
        )
        .prefetch_related("bands")
        .get(policy_id=policy_id)
    )


def _check_version_may_decide(model_name: str, model_version: str) -> None:
    """Reject the label of a candidate outside a running canary that covers the decision.

    That is a candidate whose latest canary was rolled back or stopped (the version is a
    draft again), or whose canary is paused or does not cover this action or channel. Drafts
    never canaried, active and retired versions and unrecorded labels pass, so agents whose
    label is recorded later, or that still run the previous version after a promotion, keep
    working. A retired label is logged.
    """
    version = shared_config_read(
        ("model_version", model_name, model_version),
        lambda: _model_version_read(model_name, model_version),
    )
    if version is None:
        return
    if version["status"] == VersionStatus.RETIRED:
        logger.info(
            "retired version proposed", extra={"version": version["pk"], "model_name": model_name}
        )
        return
    state = _candidate_state(version["status"], version["canary_status"])
    if state is None:
        return

    active = (
        Version.objects.filter(
            kind__in=MODEL_KINDS, subject=model_name, status=VersionStatus.ACTIVE
        )
        .values_list("label", flat=True)
        .first()
    )
    use = f"propose with the active version {active}" if active else "no version is active yet"
    raise DecisionConflict(
        "version_not_active",
        f"{model_name} {model_version} is the candidate of canary {version['canary_name']}, "
        f"which {state}, so it may not decide here; {use}.",
        data={"model_version": active},
    )


def _model_version_read(model_name: str, model_version: str) -> dict | None:
    """Read the recorded version of the label, with the name and status of its latest canary."""
    latest_canary = Canary.objects.filter(candidate=OuterRef("pk")).order_by("-created_at", "-pk")
    return (
        Version.objects.filter(kind__in=MODEL_KINDS, subject=model_name, label=model_version)
        .annotate(
            canary_name=Subquery(latest_canary.values("name")[:1]),
            canary_status=Subquery(latest_canary.values("status")[:1]),
        )
        .values("pk", "status", "canary_name", "canary_status")
        .first()
    )


def _candidate_state(version_status: str, canary_status: str | None) -> str | None:
    """Describe why a candidate may not decide outside its canary; None when it may."""
    if version_status == VersionStatus.CANARY:
        if canary_status == CanaryStatus.PAUSED:
            return "is paused"
        return "does not cover this action or channel"
    if version_status == VersionStatus.DRAFT and canary_status in (
        CanaryStatus.ROLLED_BACK,
        CanaryStatus.STOPPED,
    ):
        return f"was {CanaryStatus(canary_status).label.lower()}"
    return None


def _info(rule: str, message: str, data: dict) -> dict:
    return {"rule": rule, "outcome": INFO, "message": message, "data": data}
