import json
from datetime import UTC, datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def as_json(value: object) -> str:
    """Indented JSON, as a channel would have sent it (not Python's repr)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def iso_utc(value: datetime | None) -> str:
    """The time in ISO 8601 UTC with a Z suffix, for `<time datetime>` and the page's scripts."""
    if value is None:
        return ""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@register.filter
def countdown(due_at: datetime | None) -> str:
    """ "12 min left" or "overdue 3 min" as rendered by the server; queue.js keeps it current."""
    if due_at is None:
        return ""
    minutes = round((due_at - timezone.now()).total_seconds() / 60)
    if minutes >= 0:
        return f"{_duration(minutes)} left"
    return f"overdue {_duration(-minutes)}"


@register.filter
def is_past(value: datetime | None) -> bool:
    return value is not None and value < timezone.now()


@register.filter
def percent(value: object) -> str:
    """A 0-1 rate as a percentage with one decimal, e.g. 0.0234 as 2.3 %."""
    if value is None:
        return "-"
    return f"{float(value) * 100:.1f} %"


def _duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
