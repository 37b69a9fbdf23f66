"""Every shipping line's carrier/service code must map to a canonical carrier service."""

from ..carrier_codes import normalize_carrier_code
from ..carriers import (
    SUGGESTION_MIN_SCORE,
    carrier_mapping_find,
    carrier_service_choices,
    order_destination_country,
    shipping_line_code,
)
from ..models import Order
from ..services import order_event_add
from . import Finding, flag, hold


def check_carrier_codes(*, order: Order) -> list[Finding]:
    """Hold the order and open a review item for each distinct unknown shipping code.

    Orders without shipping lines (pickup at the till, digital goods) have nothing to map.
    The order's carrier service is its first shipping line's.
    """
    if not order.shipping_lines:
        return []

    destination = order_destination_country(order)
    findings: list[Finding] = []
    services = []
    waiting_codes = set()
    for position, line in enumerate(order.shipping_lines, start=1):
        code = shipping_line_code(line)
        mapping = carrier_mapping_find(
            channel=order.channel, code=code, destination_country=destination
        )
        if mapping is not None:
            services.append(mapping.service)
            if position == 1:
                # Saved by order_check_hygiene with the status (CHECKED_FIELDS).
                order.carrier_service = mapping.service
            continue

        normalized = normalize_carrier_code(code)
        if normalized and normalized in waiting_codes:
            continue  # One item settles every line with the same code.
        waiting_codes.add(normalized)
        item = review_item_open_carrier_code(
            order=order, position=position, line=line, destination_country=destination
        )
        findings.append(
            hold(
                "carrier_code_unknown",
                f"Shipping line {position} code {code!r} has no carrier service mapping"
                if code
                else f"Shipping line {position} has no carrier code",
                review_item=item.pk,
            )
        )

    if len({service.pk for service in services}) > 1:
        findings.append(
            flag(
                "carrier_services_differ",
                "Shipping lines use different carrier services: "
                + ", ".join(sorted({str(service) for service in services})),
            )
        )
    return findings


def review_item_open_carrier_code(
    *, order: Order, position: int, line: dict, destination_country: str
):
    from reviews.models import ReviewItem, ReviewKind

    code = shipping_line_code(line)
    choices = carrier_service_choices(shipping_line=line)
    suggested = choices[0] if choices and choices[0]["score"] >= SUGGESTION_MIN_SCORE else None
    item = ReviewItem.objects.create(
        kind=ReviewKind.CARRIER_CODE,
        order=order,
        reason=(
            f"Shipping line {position} code {code!r} ({line.get('title') or 'no title'}) has "
            f"no carrier service mapping on channel {order.channel.code}."
        ),
        source_data=line,
        proposal={
            "code": code,
            "normalized_code": normalize_carrier_code(code),
            "destination_country": destination_country,
            "shipping_line": position,
            "services": choices,
            "suggested_service_id": suggested["service_id"] if suggested else None,
        },
    )
    order_event_add(
        order=order,
        kind="review.opened",
        message=f"Review item #{item.pk} opened: unknown carrier code on shipping line {position}.",
        data={"review_item": item.pk},
    )
    return item
