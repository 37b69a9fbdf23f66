import json

from django import template

register = template.Library()


@register.filter
def as_json(value: object) -> str:
    """Indented JSON, as a channel would have sent it (not Python's repr)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
