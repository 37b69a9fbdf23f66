"""Labelled examples for retraining or prompt revision: what the AI saw, proposed, what a
person decided, and the error label, one JSON object per label.

An example comes from each error label on an AI decision, and from each error label on a
review item that an AI decision opened (the item's decision is the example's decision).
Labels on other review items (an unmapped SKU, a failed delivery) have no AI proposal to learn
from and are left out.

The input contains the order data the AI saw, e.g. the full shipping address for address
actions, so an export is personal data.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q, QuerySet

from guardrails.models import ActionType, Decision
from omsguard.query_params import repeated_parameter_errors

from .models import ErrorLabel, ReviewItem

# Rows fetched per database round trip while streaming. Each row carries the decision's facts,
# about 1 kB for a substitution in the tests, so a chunk takes roughly 1 MB (an estimate).
CHUNK_SIZE = 500
_LINE_BREAK_ESCAPES = {ord(char): f"\\u{ord(char):04x}" for char in "\u0085\u2028\u2029"}


class ExportError(ValueError):
    """An export filter that cannot be used; `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


def labelled_examples(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action_code: str | None = None,
) -> Iterator[dict]:
    """Stream one example per error label with an AI decision, oldest label first.

    `since` (inclusive) and `until` (exclusive) bound the label's `labelled_at`. Raises
    ExportError for an unknown action code, before any row is read.
    """
    if action_code is not None and not ActionType.objects.filter(code=action_code).exists():
        raise ExportError(f"Unknown action code {action_code!r}.", "action")

    labels = _labels(since=since, until=until, action_code=action_code)
    return (_example(label) for label in labels.iterator(chunk_size=CHUNK_SIZE))


def labelled_examples_jsonl(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action_code: str | None = None,
) -> Iterator[str]:
    """Stream the labelled examples as JSON lines, each ending in a newline."""
    examples = labelled_examples(since=since, until=until, action_code=action_code)
    return (_json_line(example) for example in examples)


def _json_line(example: dict) -> str:
    # Non-ASCII text stays readable, except the three characters JSON allows raw in a string
    # but Python's str.splitlines() treats as line breaks: U+0085, U+2028 and U+2029.
    text = json.dumps(example, cls=DjangoJSONEncoder, ensure_ascii=False)
    return text.translate(_LINE_BREAK_ESCAPES) + "\n"


EXPORT_PARAMETERS = ("since", "until", "action")


def export_filters(params: Mapping) -> tuple[datetime | None, datetime | None, str | None]:
    """Read the export's `since`, `until` (YYYY-MM-DD, inclusive) and `action` parameters.

    Returns `since` and `until` as UTC datetimes, `until` exclusive, and the action code or
    None. Raises ExportError naming the first parameter given more than once, because
    request.GET.get() would silently use its last value, or naming an invalid date.
    """
    repeated = repeated_parameter_errors(params, EXPORT_PARAMETERS)
    if repeated:
        name, messages = next(iter(repeated.items()))
        raise ExportError(messages[0], name)
    since, until = day_range(params.get("since"), params.get("until"))
    return since, until, params.get("action") or None


def day_start(value: str | None, field: str, *, next_day: bool = False) -> datetime | None:
    """Parse YYYY-MM-DD as the start of that day in UTC, or of the next day for an inclusive end.

    Returns None for an empty value, and for an inclusive end on the last representable day
    (9999-12-31), which bounds nothing. Raises ExportError naming `field` for anything else.
    """
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        # Only the start is echoed, so a long value cannot flood the message.
        raise ExportError(f"Invalid date {value[:40]!r}; use YYYY-MM-DD.", field) from None
    if next_day:
        if day == date.max:
            return None
        day += timedelta(days=1)
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_range(
    since: str | None,
    until: str | None,
    *,
    since_field: str = "since",
    until_field: str = "until",
) -> tuple[datetime | None, datetime | None]:
    """Parse a YYYY-MM-DD range, `until` inclusive, as UTC datetimes with `until` exclusive.

    Raises ExportError naming the field for an invalid date, and naming both when `since`
    lies after `until`, since such a range would silently match nothing.
    """
    start = day_start(since, since_field)
    end = day_start(until, until_field, next_day=True)
    if start is not None and end is not None and start >= end:
        raise ExportError(
            f"{since} is after {until_field} ({until}); no label can match, swap the two dates.",
            since_field,
        )
    return start, end


def _labels(
    *, since: datetime | None, until: datetime | None, action_code: str | None
) -> QuerySet[ErrorLabel]:
    labels = (
        ErrorLabel.objects.filter(
            Q(decision__isnull=False) | Q(review_item__ai_decision__isnull=False)
        )
        .select_related(
            "cause",
            "impact",
            "corrective_action",
            "decision__action",
            "decision__channel",
            "decision__review_item",
            "review_item__ai_decision__action",
            "review_item__ai_decision__channel",
        )
        .order_by("labelled_at", "id")
    )
    if since is not None:
        labels = labels.filter(labelled_at__gte=since)
    if until is not None:
        labels = labels.filter(labelled_at__lt=until)
    if action_code is not None:
        labels = labels.filter(
            Q(decision__action__code=action_code)
            | Q(review_item__ai_decision__action__code=action_code)
        )
    return labels


def _example(label: ErrorLabel) -> dict:
    if label.decision_id is not None:
        decision = label.decision
        item = decision.review_item
    else:
        item = label.review_item
        decision = item.ai_decision

    return {
        "label_id": label.pk,
        "labelled_at": label.labelled_at.isoformat(),
        "action": decision.action.code,
        "channel": decision.channel.code,
        "model": {"name": decision.model_name, "version": decision.model_version},
        "input": {"before": decision.before, "facts": decision.facts},
        "ai_proposal": {
            "after": decision.after,
            "confidence": str(decision.confidence),
            "rationale": decision.rationale,
            "verdict": decision.verdict,
        },
        "human_decision": _human_decision(decision, item),
        "label": {
            "cause": label.cause.code,
            "impact": label.impact.code,
            "corrective_action": label.corrective_action.code,
            "note": label.note,
        },
    }


def _human_decision(decision: Decision, item: ReviewItem | None) -> dict | None:
    """Return the reviewer's decision on the AI's proposal, or None when no person reviewed it."""
    if item is None:
        return None
    return {
        "status": item.status,
        "review_outcome": decision.review_outcome or None,
        "decision": item.decision,
        "revision": item.revision,
        "decided_at": item.decided_at.isoformat() if item.decided_at else None,
    }
