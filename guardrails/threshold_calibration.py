"""Threshold calibration: how often reviewers accepted an action's proposals at each confidence,
and the confidence threshold that would have met a target precision, offered as a draft.

A reviewed decision counts as accepted when its reviewer agreed with it (review_outcome
"agreed") and as rejected when they rejected or revised it ("disagreed"). Queued proposals
and audit samples of autonomous ones both count. Known-answer items never do: they have no
decision.

`reliability_curve` buckets those decisions by confidence. `threshold_for_precision` finds the
lowest threshold above which the accepted share reaches the target with enough reviews.
`calibration_suggest` compares it with the live policy version, and `calibration_draft_create`
stores a draft version that differs from the live one only in its `confidence_above`, so the
backtest can replay recorded decisions under it before anyone publishes it.

NOTE: Proposals above the live threshold are applied autonomously and reach a reviewer only
as audit samples, so they are under-represented next to the queued ones below it. The rate
within one confidence bin is still a fair estimate. The counts, and the pooled precision above
a threshold that lies below the live one, are not weighted by the sampling rate.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.utils import timezone

from catalog.models import Channel

from .models import ActionType, Decision, PolicyVersion, ReviewOutcome
from .policies import BAND_FIELDS, RULE_FIELDS, policy_rules_problems, policy_version_create
from .selectors import guardrail_settings, policy_version_live_for

logger = logging.getLogger(__name__)

CREATE_PERMISSION = "guardrails.add_policyversion"
CALIBRATION_DAYS = 90
DEFAULT_BINS = 10
MAX_BINS = 100
MAX_DAYS = 365
PLACES = Decimal("0.0001")
# Confidences are stored with four decimal places, so this is the smallest step between two.
CONFIDENCE_STEP = Decimal("0.0001")
# How many of a policy's newest unpublished drafts are checked for one with the same rules.
DRAFTS_COMPARED = 20


class CalibrationError(ValueError):
    """A calibration that cannot run or cannot become a draft; `field` names the input at fault.

    `status` is the HTTP status a page or API maps it to: 400 for bad input, 409 when the
    data or the live policy rule out a draft.
    """

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class CurveBin:
    """One confidence range [lower, upper) of the curve (the last one includes 1)."""

    lower: Decimal
    upper: Decimal
    count: int
    accepted: int
    # accepted / count and the mean confidence, four places; None for an empty bin.
    acceptance_rate: Decimal | None
    mean_confidence: Decimal | None

    def as_dict(self) -> dict:
        """Return the bin as JSON-ready data, Decimals as strings."""
        return {
            "lower": str(self.lower),
            "upper": str(self.upper),
            "count": self.count,
            "accepted": self.accepted,
            "acceptance_rate": _text(self.acceptance_rate),
            "mean_confidence": _text(self.mean_confidence),
        }


@dataclass(frozen=True)
class Curve:
    """Observed acceptance per confidence bin of one action (and channel) since `since`."""

    action_code: str
    channel_code: str | None
    days: int
    since: datetime
    bins: list[CurveBin] = field(default_factory=list)

    @property
    def reviewed(self) -> int:
        return sum(row.count for row in self.bins)

    @property
    def accepted(self) -> int:
        return sum(row.accepted for row in self.bins)

    def as_dict(self) -> dict:
        """Return the curve as JSON-ready data, Decimals as strings."""
        return {
            "action_code": self.action_code,
            "channel_code": self.channel_code,
            "days": self.days,
            "since": self.since.isoformat(),
            "reviewed": self.reviewed,
            "accepted": self.accepted,
            "bins": [row.as_dict() for row in self.bins],
        }


@dataclass(frozen=True)
class Suggestion:
    """The threshold that meets the target, or None with the reason in `message`.

    `code` is "found", "too_little_data" or "target_not_met". The `*_above` figures describe
    the decisions above the suggested threshold, or above the best candidate when none meets
    the target (zero and None when there was too little data).
    """

    threshold: Decimal | None
    code: str
    message: str
    reviewed: int
    reviewed_above: int = 0
    accepted_above: int = 0
    precision_above: Decimal | None = None


# --- The pure parts ---------------------------------------------------------------------------


def curve_bins(
    decisions: list[tuple[Decimal, bool]], *, bins: int = DEFAULT_BINS
) -> list[CurveBin]:
    """Bucket (confidence, accepted) pairs into `bins` equal confidence ranges from 0 to 1."""
    counts = [0] * bins
    accepted = [0] * bins
    sums = [Decimal("0")] * bins
    for confidence, was_accepted in decisions:
        index = min(int((confidence * bins).to_integral_value(rounding=ROUND_FLOOR)), bins - 1)
        index = max(index, 0)
        counts[index] += 1
        accepted[index] += bool(was_accepted)
        sums[index] += confidence
    return [
        CurveBin(
            lower=_bound(index, bins),
            upper=_bound(index + 1, bins),
            count=counts[index],
            accepted=accepted[index],
            acceptance_rate=_ratio(accepted[index], counts[index]),
            mean_confidence=_ratio(sums[index], counts[index]),
        )
        for index in range(bins)
    ]


def threshold_for_precision(
    *, decisions: list[tuple[Decimal, bool]], target_precision: Decimal, min_reviews: int
) -> Suggestion:
    """Find the lowest threshold t with enough accepted decisions above it.

    Above t means a confidence strictly greater than t, as the engine's `confidence_above`
    reads. t qualifies when at least `min_reviews` decisions lie above it and their accepted
    share is at least `target_precision`. The candidates are the reviewed confidences
    themselves, and one step (0.0001) below the lowest of them, which keeps every reviewed
    decision above it. Lower thresholds are never suggested, because no reviewed decision
    supports them. Decisions with equal confidence always fall on the same side.
    """
    if not Decimal("0") < target_precision <= Decimal("1"):
        raise ValueError(f"target_precision must be above 0 and at most 1, not {target_precision}.")
    if min_reviews < 1:
        raise ValueError(f"min_reviews must be 1 or more, not {min_reviews}.")

    total = len(decisions)
    if total < min_reviews:
        return Suggestion(
            threshold=None,
            code="too_little_data",
            message=(
                f"Too little data: {total} reviewed decisions, but at least {min_reviews} are "
                "needed above a threshold."
            ),
            reviewed=total,
        )

    best: tuple[Decimal, int, int] | None = None
    for threshold, above, accepted in _candidates(decisions):
        if above < min_reviews:
            break
        if accepted >= target_precision * above:
            return Suggestion(
                threshold=threshold,
                code="found",
                message=(
                    f"Above {threshold}: {accepted} of {above} reviewed decisions accepted, "
                    f"precision {_ratio(accepted, above)}, target {target_precision}."
                ),
                reviewed=total,
                reviewed_above=above,
                accepted_above=accepted,
                precision_above=_ratio(accepted, above),
            )
        if best is None or accepted * best[1] > best[2] * above:
            best = (threshold, above, accepted)

    if best is None:
        # Only possible when the lowest confidence is 0: no threshold keeps enough above it.
        return Suggestion(
            threshold=None,
            code="too_little_data",
            message=(
                f"Too little data: fewer than {min_reviews} reviewed decisions lie above any "
                "threshold from 0 up."
            ),
            reviewed=total,
        )
    threshold, above, accepted = best
    return Suggestion(
        threshold=None,
        code="target_not_met",
        message=(
            f"No threshold reaches precision {target_precision} with at least {min_reviews} "
            f"reviewed decisions above it; the best is {_ratio(accepted, above)} above "
            f"{threshold} ({accepted} of {above} accepted)."
        ),
        reviewed=total,
        reviewed_above=above,
        accepted_above=accepted,
        precision_above=_ratio(accepted, above),
    )


def _candidates(decisions: list[tuple[Decimal, bool]]):
    """Yield (threshold, decisions above it, accepted above it), thresholds ascending."""
    per_value: dict[Decimal, list[int]] = defaultdict(lambda: [0, 0])
    for confidence, was_accepted in decisions:
        per_value[confidence][0] += 1
        per_value[confidence][1] += bool(was_accepted)
    values = sorted(per_value)

    above = len(decisions)
    accepted = sum(counts[1] for counts in per_value.values())
    below_lowest = values[0] - CONFIDENCE_STEP
    if below_lowest >= 0:
        yield below_lowest, above, accepted
    for value in values:
        above -= per_value[value][0]
        accepted -= per_value[value][1]
        yield value, above, accepted


# --- Reads --------------------------------------------------------------------------------------


def reliability_curve(
    *,
    action_code: str,
    channel_code: str | None = None,
    days: int = CALIBRATION_DAYS,
    bins: int = DEFAULT_BINS,
) -> Curve:
    """Return the acceptance rate per confidence bin of the action's reviewed decisions.

    Counts the decisions reviewed in the last `days` days, on `channel_code` when given,
    else on every channel. Raises CalibrationError for an unknown action or channel, or days
    or bins out of range.
    """
    if not 1 <= days <= MAX_DAYS:
        raise CalibrationError(
            "invalid_days", f"Days must be between 1 and {MAX_DAYS}, not {days}.", field="days"
        )
    if not 1 <= bins <= MAX_BINS:
        raise CalibrationError(
            "invalid_bins", f"Bins must be between 1 and {MAX_BINS}, not {bins}.", field="bins"
        )
    action, channel = _scope(action_code, channel_code)
    since = timezone.now() - timedelta(days=days)
    decisions = _reviewed_decisions(action, channel, since)
    return Curve(
        action_code=action.code,
        channel_code=channel.code if channel else None,
        days=days,
        since=since,
        bins=curve_bins(decisions, bins=bins),
    )


def calibration_suggest(*, action_code: str, channel_code: str | None = None) -> dict:
    """Compare the threshold the review history supports with the live policy version's.

    Uses the settings' `calibration_target_precision` and `calibration_min_reviews` over the
    last CALIBRATION_DAYS days. Only the version-level `confidence_above` is suggested: value
    bands that set their own `confidence_above` keep it, and are listed in `kept_bands`.

    Returns a dict with: curve (Curve), suggestion (Suggestion), target_precision,
    min_reviews, live_version (PolicyVersion or None), current_threshold, kept_bands
    ([(name, confidence_above)]), draftable (bool), and, when not draftable, blocked_code
    and blocked_reason. When the channel has no policy of its own and the all-channels
    version is shown, policy_scope_note says so.
    """
    config = guardrail_settings()
    curve_days = CALIBRATION_DAYS
    action, channel = _scope(action_code, channel_code)
    since = timezone.now() - timedelta(days=curve_days)
    decisions = _reviewed_decisions(action, channel, since)
    suggestion = threshold_for_precision(
        decisions=decisions,
        target_precision=config.calibration_target_precision,
        min_reviews=config.calibration_min_reviews,
    )
    version = policy_version_live_for(action=action, channel=channel)
    result = {
        "curve": Curve(
            action_code=action.code,
            channel_code=channel.code if channel else None,
            days=curve_days,
            since=since,
            bins=curve_bins(decisions),
        ),
        "suggestion": suggestion,
        "target_precision": config.calibration_target_precision,
        "min_reviews": config.calibration_min_reviews,
        "live_version": version,
        "current_threshold": version.confidence_above if version else None,
        "kept_bands": [
            (band.name, band.confidence_above)
            for band in (version.bands.all() if version else [])
            if band.confidence_above
        ],
    }
    if channel is not None and version is not None and version.policy.channel_id is None:
        result["policy_scope_note"] = (
            f"Channel {channel.code} has no {action.code} policy of its own; shown is the "
            f"policy for all channels, {version}."
        )
    blocked = _draft_blocker(action, channel, version, suggestion)
    result["draftable"] = blocked is None
    if blocked is not None:
        result["blocked_code"], result["blocked_reason"] = blocked
    return result


# --- Writes -------------------------------------------------------------------------------------


def calibration_draft_create(
    *, action_code: str, channel_code: str | None = None, user: AbstractBaseUser
) -> PolicyVersion:
    """Store a draft copy of the live version with the suggested version-level threshold.

    Bands, limits, approvers and the SLA are copied unchanged. The changelog quotes the target,
    the reviewed counts, the precision above the new threshold and the curve. Raises
    PermissionDenied without guardrails.add_policyversion and CalibrationError (status 409)
    when no draft can be made, with the reason.
    An unpublished draft of the policy with exactly these rules and bands is returned instead
    of a second copy; `calibration_draft_get_or_create` tells the two cases apart.
    """
    return calibration_draft_get_or_create(
        action_code=action_code, channel_code=channel_code, user=user
    )[0]


def calibration_draft_get_or_create(
    *, action_code: str, channel_code: str | None = None, user: AbstractBaseUser
) -> tuple[PolicyVersion, bool]:
    """Return the calibration draft and whether it was created now (False: an identical one exists).

    Raises like `calibration_draft_create`.
    """
    if not user.has_perm(CREATE_PERMISSION):
        raise PermissionDenied(f"{user.get_username()} lacks {CREATE_PERMISSION}.")
    result = calibration_suggest(action_code=action_code, channel_code=channel_code)
    if not result["draftable"]:
        raise CalibrationError(result["blocked_code"], result["blocked_reason"], status=409)

    live = result["live_version"]
    threshold = result["suggestion"].threshold
    rules, bands = _rules_and_bands(live)
    rules["confidence_above"] = threshold
    existing = _draft_same_rules(live.policy_id, rules, bands)
    if existing is not None:
        # Pressing the button twice must not leave two identical drafts to backtest and publish.
        logger.info(
            "calibration draft reused",
            extra={"policy_version": existing.pk, "action": action_code, "channel": channel_code},
        )
        return existing, False
    draft = policy_version_create(
        policy=live.policy,
        user=user,
        changelog=calibration_changelog(result),
        bands=bands,
        **rules,
    )
    logger.info(
        "calibration draft created",
        extra={
            "policy_version": draft.pk,
            "copied_from": live.pk,
            "action": action_code,
            "channel": channel_code,
            "confidence_above": str(threshold),
        },
    )
    return draft, True


def calibration_changelog(result: dict) -> str:
    """Write the draft's changelog from a `calibration_suggest` result."""
    live = result["live_version"]
    suggestion = result["suggestion"]
    curve = result["curve"]
    scope = f"channel {curve.channel_code}" if curve.channel_code else "all channels"
    current = result["current_threshold"]
    lines = [
        f"Threshold calibration of {curve.action_code} on {scope}: confidence_above "
        f"{current if current is not None else 'none'} -> {suggestion.threshold}. Copied from "
        f"v{live.number}; nothing else changes.",
        f"Target precision {result['target_precision']} with at least {result['min_reviews']} "
        f"reviewed decisions above the threshold. Reviewed in the last {curve.days} days: "
        f"{suggestion.reviewed}. Above {suggestion.threshold}: {suggestion.reviewed_above} "
        f"reviewed, {suggestion.accepted_above} accepted, precision "
        f"{suggestion.precision_above}.",
    ]
    if result["kept_bands"]:
        kept = ", ".join(f"{name!r} ({value})" for name, value in result["kept_bands"])
        lines.append(f"Value bands with their own confidence_above keep it: {kept}.")
    lines.append(
        "Reliability curve (confidence range: reviewed, accepted, acceptance rate, mean "
        "confidence):"
    )
    lines += [
        f"{row.lower}-{row.upper}: {row.count}, {row.accepted}, {row.acceptance_rate}, "
        f"{row.mean_confidence}"
        for row in curve.bins
        if row.count
    ]
    lines.append("Backtest this draft before publishing it.")
    return "\n".join(lines)


# --- Helpers ------------------------------------------------------------------------------------


def _scope(action_code: str, channel_code: str | None) -> tuple[ActionType, Channel | None]:
    action = ActionType.objects.filter(code=action_code).first() if action_code else None
    if action is None:
        raise CalibrationError("unknown_action", f"Unknown action {action_code!r}.", field="action")
    channel = None
    if channel_code:
        channel = Channel.objects.filter(code=channel_code).first()
        if channel is None:
            raise CalibrationError(
                "unknown_channel", f"Unknown channel {channel_code!r}.", field="channel"
            )
    return action, channel


def _reviewed_decisions(
    action: ActionType, channel: Channel | None, since: datetime
) -> list[tuple[Decimal, bool]]:
    """Return (confidence, accepted) of the decisions reviewed since `since`, in one query."""
    decisions = Decision.objects.filter(
        action=action,
        review_outcome__in=[ReviewOutcome.AGREED, ReviewOutcome.DISAGREED],
        reviewed_at__gte=since,
    ).filter(Q(review_item__isnull=True) | Q(review_item__known_answer__isnull=True))
    if channel is not None:
        decisions = decisions.filter(channel=channel)
    return [
        (confidence, outcome == ReviewOutcome.AGREED)
        for confidence, outcome in decisions.order_by().values_list("confidence", "review_outcome")
    ]


def _draft_blocker(
    action: ActionType, channel: Channel | None, version, suggestion: Suggestion
) -> tuple[str, str] | None:
    """Return (code, reason) when the suggestion cannot become a draft, else None."""
    if suggestion.threshold is None:
        return suggestion.code, suggestion.message
    if version is None:
        scope = f"channel {channel.code}" if channel else "all channels"
        return "no_policy", f"No live policy judges {action.code} on {scope}; create one first."
    if channel is not None and version.policy.channel_id is None:
        return (
            "no_channel_policy",
            f"Channel {channel.code} has no {action.code} policy of its own, so a draft would "
            "change the policy for all channels. Calibrate over all channels, or add a policy "
            "for the channel first.",
        )
    if version.confidence_above == suggestion.threshold:
        return "unchanged", f"The live version already uses {suggestion.threshold}."

    rules, bands = _rules_and_bands(version)
    rules["confidence_above"] = suggestion.threshold
    problems = policy_rules_problems(action=action, rules=rules, bands=bands)
    if problems:
        messages = problems.get("confidence_above") or next(iter(problems.values()))
        return "invalid_rules", f"{version} cannot take this threshold: {' '.join(messages)}"
    return None


def _draft_same_rules(policy_id: int, rules: dict, bands: list[dict]) -> PolicyVersion | None:
    """Return the newest unpublished draft of the policy with these rules and bands, else None."""
    # Only the newest drafts are compared, so the check stays a couple of queries.
    drafts = (
        PolicyVersion.objects.filter(policy_id=policy_id, published_at__isnull=True)
        .select_related("policy__action", "policy__channel", "approver_group", "escalation_group")
        .prefetch_related("bands")
        .order_by("-number")[:DRAFTS_COMPARED]
    )
    for draft in drafts:
        if _rules_and_bands(draft) == (rules, bands):
            return draft
    return None


def _rules_and_bands(version: PolicyVersion) -> tuple[dict, list[dict]]:
    rules = {name: getattr(version, name) for name in RULE_FIELDS}
    bands = [{name: getattr(band, name) for name in BAND_FIELDS} for band in version.bands.all()]
    return rules, bands


def _bound(index: int, bins: int) -> Decimal:
    return (Decimal(index) / bins).quantize(PLACES, rounding=ROUND_HALF_UP)


def _ratio(part, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) / whole).quantize(PLACES, rounding=ROUND_HALF_UP)


def _text(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None
