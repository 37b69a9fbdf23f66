"""Disagreement rates: how often the person who reviewed an AI decision did not agree with it.

A decision counts once it has a `review_outcome`: "agreed" when its review item was accepted
as proposed, "disagreed" when it was rejected or revised. Reviews are counted by
`reviewed_at` over a window of days (`GuardrailSettings.disagreement_window_days` unless
given), so the rate follows recent model behaviour.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from .models import Decision, ReviewOutcome
from .selectors import guardrail_settings

RATE_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class DisagreementRow:
    action_code: str
    model_name: str
    model_version: str
    reviewed: int
    disagreed: int
    # disagreed / reviewed, 0 to 1, four places.
    rate: Decimal


@dataclass(frozen=True)
class DisagreementTotal:
    reviewed: int
    disagreed: int
    # None while nothing was reviewed in the window.
    rate: Decimal | None


DISAGREED = Q(review_outcome=ReviewOutcome.DISAGREED)


def disagreement_rates(*, days: int | None = None) -> list[DisagreementRow]:
    """Reviewed and disagreed counts per action code, model name and model version.

    One aggregate query. Rows are sorted by action code, model name and model version.
    """
    rows = (
        _reviewed(days)
        .values("action__code", "model_name", "model_version")
        .annotate(reviewed=Count("id"), disagreed=Count("id", filter=DISAGREED))
        .order_by("action__code", "model_name", "model_version")
    )
    return [
        DisagreementRow(
            action_code=row["action__code"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            reviewed=row["reviewed"],
            disagreed=row["disagreed"],
            rate=_ratio(row["disagreed"], row["reviewed"]),
        )
        for row in rows
    ]


def disagreement_rate_overall(
    *,
    days: int | None = None,
    action_code: str | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
) -> DisagreementTotal:
    """Compute the disagreement rate of all decisions reviewed in the window, or of some."""
    decisions = _reviewed(days)
    if action_code:
        decisions = decisions.filter(action__code=action_code)
    if model_name:
        decisions = decisions.filter(model_name=model_name)
    if model_version:
        decisions = decisions.filter(model_version=model_version)
    counts = decisions.aggregate(reviewed=Count("id"), disagreed=Count("id", filter=DISAGREED))
    reviewed, disagreed = counts["reviewed"], counts["disagreed"]
    return DisagreementTotal(
        reviewed=reviewed,
        disagreed=disagreed,
        rate=_ratio(disagreed, reviewed) if reviewed else None,
    )


def disagreement_window_days(days: int | None = None) -> int:
    """Return the window to count over: `days` when given, else the setting."""
    return days if days is not None else guardrail_settings().disagreement_window_days


def _reviewed(days: int | None) -> QuerySet[Decision]:
    since = timezone.now() - timedelta(days=disagreement_window_days(days))
    return Decision.objects.filter(
        review_outcome__in=ReviewOutcome.values, reviewed_at__gte=since
    ).order_by()


def _ratio(part: int, whole: int) -> Decimal:
    return (Decimal(part) / whole).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)
