import json
from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

from orders.canonical import address_field_name
from orders.models import OrderStatus
from reviews import display

register = template.Library()


@register.filter
def as_json(value: object) -> str:
    """Indented JSON, as a channel would have sent it (not Python's repr)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def address_field(name: str) -> str:
    """Return the canonical order format's name of a stored address key ("zip" -> "postal_code").

    The comparison rows keep the stored keys because Accept and the revise form write them. The
    page shows the names that the reasons and the API use.
    """
    return address_field_name(name)


@register.filter
def iso_utc(value: datetime | None) -> str:
    """Format the time as ISO 8601 UTC with a Z suffix, for `<time datetime>` and scripts."""
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
    """Format a 0-1 rate as a percentage with one decimal, e.g. 0.0234 as 2.3 %."""
    if value is None:
        return "-"
    return f"{float(value) * 100:.1f} %"


# Display names of the role groups that reviews/migrations/0002_roles.py creates.
@register.filter
def role_label(group_name: str) -> str:
    """Name a role group as people call it ("CS manager")."""
    return display.role_label(group_name)


@register.filter
def mid_sentence(label: str) -> str:
    """Lower-case a label for use inside a sentence, keeping acronyms such as SKU or AI."""
    return display.mid_sentence(label)


def _duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


@register.filter
def ai_decision_outcome(item) -> str:
    """Describe what deciding an AI proposal's review item did, for the decided card.

    Returns "" for items that are not AI proposals; the card then uses its other sentences.
    """
    outcome = item.decision or {}
    decision_id = outcome.get("decision")
    if decision_id is None or not ({"applied", "rejected"} & set(outcome)):
        return ""

    order = item.order
    order_label = (order.order_number or order.channel_order_id) if order else ""
    if outcome.get("rejected"):
        return f"decision #{decision_id} rejected; order {order_label} is left as it was."
    if not outcome.get("applied"):
        return f"decision #{decision_id} approved; a person carries it out."
    return format_html("{} (decision #{}).", _applied_change(outcome, order_label), decision_id)


def _applied_change(outcome: dict, order_label: str) -> str:
    if outcome.get("status") == OrderStatus.CANCELLED:
        return f"order {order_label} cancelled"
    if "status" in outcome:
        return f"order {order_label} set to {outcome['status']}"
    if "sku" in outcome:
        return format_html("line {} now ships <code>{}</code>", outcome["line"], outcome["sku"])
    if "carrier_service" in outcome:
        return format_html(
            "carrier service set to <code>{}</code>", outcome["carrier_service"] or "(none)"
        )
    if "field" in outcome:
        return f"{outcome['field'].replace('_', ' ')} changed"
    if "in_store_pickup" in outcome:
        where = f"stock moved to {outcome['location']}, " if outcome.get("location") else ""
        pickup = "in-store pickup" if outcome["in_store_pickup"] else "shipping"
        return f"{where}order {order_label} set to {pickup}"
    return f"order {order_label} changed"
