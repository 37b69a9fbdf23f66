from datetime import datetime

from django import template

register = template.Library()


@register.filter
def iso_datetime(value: str | None) -> datetime | None:
    """Parse an ISO 8601 time stored in JSON (review proposals) for the date filters."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
