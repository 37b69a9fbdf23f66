"""Policy backtests and shadow versions: replay recorded decisions under another policy version.

A decision stores the facts the engine saw, so a draft version can judge the same proposals
again without touching orders. `backtest_run` replays a window of past decisions and stores
the report; `shadow_evaluate` judges one live decision beside the live version.
"""

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from .engine import Evaluation, evaluate, rules_from_version
from .models import BacktestRun, Decision, Policy, PolicyVersion, ShadowEvaluation
from .rollout_selectors import shadow_record_q
from .services import audit_record

logger = logging.getLogger(__name__)

MAX_DAYS = 365
NO_BAND = "no band"
ITERATOR_CHUNK_SIZE = 2000


class BacktestError(ValueError):
    """A backtest or shadow request that cannot run, with the field it concerns."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def backtest_run(
    *,
    version: PolicyVersion,
    days: int,
    user: AbstractBaseUser | None = None,
    example_limit: int = 5,
) -> BacktestRun:
    """Replay the policy's decisions of the last `days` days under `version` and store a report.

    The decisions replayed are those the version's policy would judge: the same action, and the
    policy's channel, or for an all-channels policy every channel without a live policy of its
    own. Each one is judged again from its stored facts and compared with its recorded verdict.
    """
    if not 1 <= days <= MAX_DAYS:
        raise BacktestError(f"days must be between 1 and {MAX_DAYS}, not {days}.", field="days")

    version = _version_for_evaluation(version)
    window_end = timezone.now()
    window_start = window_end - timedelta(days=days)
    decisions = decisions_in_scope(version.policy).filter(
        created_at__gte=window_start, created_at__lte=window_end
    )

    report = _replay(version, decisions, example_limit=example_limit)
    report |= {
        "version": {"id": version.pk, "label": str(version), "draft": not version.published_at},
        "days": days,
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
    }

    with transaction.atomic():
        run = BacktestRun.objects.create(
            policy_version=version,
            days=days,
            decisions_replayed=report["decisions_replayed"],
            verdicts_changed=report["verdicts_changed"],
            report=report,
            created_by=user,
        )
        audit_record(
            action="policy.backtest",
            target_type="policy_version",
            target_id=version.pk,
            actor=user,
            system_label="" if user is not None else "backtest",
            reason=f"Replayed {run.decisions_replayed} decisions of the last {days} days.",
            after={
                "backtest_run": run.pk,
                "decisions_replayed": run.decisions_replayed,
                "verdicts_changed": run.verdicts_changed,
            },
        )

    logger.info(
        "backtest finished",
        extra={
            "backtest_run": run.pk,
            "policy_version": version.pk,
            "days": days,
            "decisions_replayed": run.decisions_replayed,
            "verdicts_changed": run.verdicts_changed,
        },
    )
    return run


def decisions_in_scope(policy: Policy) -> QuerySet[Decision]:
    """Select the decisions a policy judges: its action, on its channel or on uncovered channels.

    A shadow canary's records of its candidate are left out: their facts come from a model
    version that decided nothing, so replaying them would judge proposals no order received.
    """
    decisions = Decision.objects.filter(action_id=policy.action_id).exclude(shadow_record_q())
    if policy.channel_id is not None:
        return decisions.filter(channel_id=policy.channel_id)

    # Same rule as selectors.policy_for: a channel policy without a live version does not count.
    own_policies = Policy.objects.filter(
        action_id=policy.action_id, channel__isnull=False, live_version__isnull=False
    ).values("channel_id")
    return decisions.exclude(channel_id__in=own_policies)


def _version_for_evaluation(version: PolicyVersion) -> PolicyVersion:
    return (
        PolicyVersion.objects.select_related(
            "policy__action", "policy__channel", "approver_group", "escalation_group"
        )
        .prefetch_related("bands")
        .get(pk=version.pk)
    )


def _replay(version: PolicyVersion, decisions: QuerySet[Decision], *, example_limit: int) -> dict:
    rules = rules_from_version(version)
    action_code = version.policy.action.code
    replayed = Counter()
    changed = Counter()
    before = Counter()
    after = Counter()
    transitions: dict[str, dict] = defaultdict(lambda: {"count": 0, "examples": []})

    # Only the columns the replay reads, streamed in chunks, so a long window never loads whole.
    rows = decisions.order_by("created_at", "id").values_list(
        "id", "order_id", "channel__code", "verdict", "facts"
    )
    for decision_id, order_id, channel_code, old_verdict, facts in rows.iterator(
        chunk_size=ITERATOR_CHUNK_SIZE
    ):
        evaluation = evaluate(rules=rules, facts=facts or {})
        band = evaluation.band or NO_BAND
        groups = (("action", action_code), ("channel", channel_code), ("band", band))
        replayed.update(groups)
        before[old_verdict] += 1
        after[evaluation.verdict] += 1
        if evaluation.verdict == old_verdict:
            continue

        changed.update(groups)
        transition = transitions[f"{old_verdict} -> {evaluation.verdict}"]
        transition["count"] += 1
        if len(transition["examples"]) < example_limit:
            transition["examples"].append(
                _example(decision_id, order_id, channel_code, old_verdict, evaluation)
            )

    return {
        "decisions_replayed": sum(before.values()),
        "verdicts_changed": sum(item["count"] for item in transitions.values()),
        "verdicts_before": dict(before),
        "verdicts_after": dict(after),
        "by_action": _grouped("action", replayed, changed),
        "by_channel": _grouped("channel", replayed, changed),
        "by_band": _grouped("band", replayed, changed),
        "by_transition": dict(sorted(transitions.items(), key=lambda item: -item[1]["count"])),
    }


def _grouped(kind: str, replayed: Counter, changed: Counter) -> dict[str, dict[str, int]]:
    return {
        key: {"replayed": count, "changed": changed[(kind, key)]}
        for (group_kind, key), count in sorted(replayed.items())
        if group_kind == kind
    }


def _example(
    decision_id: int, order_id: int, channel_code: str, old_verdict: str, evaluation: Evaluation
) -> dict:
    return {
        "decision": decision_id,
        "order": order_id,
        "channel": channel_code,
        "old_verdict": old_verdict,
        "new_verdict": evaluation.verdict,
        "band": evaluation.band,
        "fired": [
            {"rule": reason["rule"], "outcome": reason["outcome"], "message": reason["message"]}
            for reason in evaluation.fired()
        ],
    }


def fired_summary(fired: list[dict]) -> str:
    """Join the messages of an example's fired rules into one text of whole sentences."""
    sentences = [message.strip() for message in (reason["message"] for reason in fired)]
    return " ".join(
        sentence if sentence.endswith((".", "!", "?")) else f"{sentence}."
        for sentence in sentences
        if sentence
    )


# --- Shadow versions ---------------------------------------------------------------------------


def shadow_evaluate(decision: Decision, version: PolicyVersion) -> ShadowEvaluation:
    """Judge a recorded decision under the shadow `version` and store whether they agree."""
    evaluation = evaluate(rules=rules_from_version(version), facts=decision.facts or {})
    shadow = ShadowEvaluation.objects.create(
        decision=decision,
        policy_version=version,
        verdict=evaluation.verdict,
        reasons=evaluation.reasons,
        agrees=evaluation.verdict == decision.verdict,
    )
    if not shadow.agrees:
        logger.info(
            "shadow version disagrees",
            extra={
                "decision": decision.pk,
                "policy_version": version.pk,
                "verdict": decision.verdict,
                "shadow_verdict": shadow.verdict,
            },
        )
    return shadow


def shadow_start(*, version: PolicyVersion, user: AbstractBaseUser) -> Policy:
    """Evaluate the draft `version` beside its policy's live version from now on."""
    if version.published_at is not None:
        raise BacktestError(
            f"Only a draft version can run in shadow, and {version} is published.",
            field="version",
        )

    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=version.policy_id)
        previous = policy.shadow_version_id
        if previous == version.pk:
            # Already the shadow: nothing changes, so there is nothing to audit.
            return policy
        policy.shadow_version = version
        policy.save(update_fields=["shadow_version"])
        audit_record(
            action="policy.shadow_start",
            target_type="policy",
            target_id=policy.pk,
            actor=user,
            reason=f"{version} runs in shadow beside the live version.",
            before={"shadow_version": previous},
            after={"shadow_version": version.pk},
        )
    logger.info("shadow started", extra={"policy": policy.pk, "policy_version": version.pk})
    return policy


def shadow_stop(*, policy: Policy, user: AbstractBaseUser) -> Policy:
    """Stop evaluating the policy's shadow version. Its recorded evaluations stay."""
    with transaction.atomic():
        policy = Policy.objects.select_for_update().get(pk=policy.pk)
        previous = policy.shadow_version_id
        if previous is None:
            return policy
        policy.shadow_version = None
        policy.save(update_fields=["shadow_version"])
        audit_record(
            action="policy.shadow_stop",
            target_type="policy",
            target_id=policy.pk,
            actor=user,
            reason="The shadow version was stopped.",
            before={"shadow_version": previous},
            after={"shadow_version": None},
        )
    logger.info("shadow stopped", extra={"policy": policy.pk, "policy_version": previous})
    return policy


def shadow_disagreements(version: PolicyVersion, days: int) -> dict:
    """Count the version's shadow evaluations of the last `days` days, and how they disagree."""
    since = timezone.now() - timedelta(days=days)
    evaluations = ShadowEvaluation.objects.filter(policy_version=version, created_at__gte=since)
    # No ordering, or the default one would split the groups by created_at.
    rows = (
        evaluations.order_by()
        .values_list("agrees", "decision__verdict", "verdict")
        .annotate(count=Count("id"))
    )

    summary = {"days": days, "evaluated": 0, "agree": 0, "disagree": 0, "by_transition": {}}
    for agrees, live_verdict, shadow_verdict, count in rows:
        summary["evaluated"] += count
        if agrees:
            summary["agree"] += count
            continue
        summary["disagree"] += count
        key = f"{live_verdict} -> {shadow_verdict}"
        summary["by_transition"][key] = summary["by_transition"].get(key, 0) + count
    return summary
