"""Carrier and service codes: finding the canonical service for a channel's code, mapping
new codes, and settling the review items that wait on a code.

Lookups fold the code (normalize_carrier_code) and take the most specific mapping: the
order's channel and destination country, then the channel alone, then any channel with the
country, then any channel.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from rapidfuzz import fuzz, utils

from catalog.models import Channel
from catalog.sql_rows import column_list, instance_from_row
from guardrails.services import audit_record

from .carrier_codes import normalize_carrier_code
from .models import (
    Carrier,
    CarrierCodeMapping,
    CarrierService,
    Order,
    OrderStatus,
    ServiceLevel,
)
from .services import order_event_add, order_update_hold_reasons, order_version_bump

logger = logging.getLogger(__name__)

# A service is proposed as the default choice only when its name is at least this similar
# (rapidfuzz token_set_ratio, 0-100) to the shipping line's title and source. Lower scores
# proved to be shared words such as "Standard", not the same service.
SUGGESTION_MIN_SCORE = 80


# The most specific mapping of a folded code with its service and carrier: this channel before
# any channel, this country before any country. The unique constraints allow one mapping per
# (channel or none, country or none), so the first row is the only candidate of its rank.
MAPPING_FIND_QUERY = (
    f"SELECT {column_list(CarrierCodeMapping, 'm')}, {column_list(CarrierService, 's')}, "  # noqa: S608
    f"{column_list(Carrier, 'c')} "
    f'FROM "{CarrierCodeMapping._meta.db_table}" AS "m" '
    f'JOIN "{CarrierService._meta.db_table}" AS "s" ON "s"."id" = "m"."service_id" '
    f'JOIN "{Carrier._meta.db_table}" AS "c" ON "c"."id" = "s"."carrier_id" '
    'WHERE "m"."normalized_code" = %s AND ("m"."channel_id" = %s OR "m"."channel_id" IS NULL) '
    """AND "m"."destination_country" IN (%s, '') """
    """ORDER BY "m"."channel_id" IS NULL, "m"."destination_country" = '' LIMIT 1"""
)


class CarrierMappingConflict(Exception):
    """The code is already mapped to another service in the same scope."""

    def __init__(self, mapping: CarrierCodeMapping, requested: CarrierService) -> None:
        self.mapping = mapping
        self.requested = requested
        scope = f"channel {mapping.channel.code}" if mapping.channel_id else "every channel"
        if mapping.destination_country:
            scope += f" (orders to {mapping.destination_country})"
        super().__init__(
            f"Carrier code {mapping.code!r} on {scope} is already mapped to "
            f"{mapping.service}, not {requested}."
        )


def shipping_line_code(line: dict) -> str:
    """Return the code a shipping line is looked up by: its code, else its title."""
    return (line.get("code") or line.get("title") or "").strip()


def order_destination_country(order: Order) -> str:
    address = order.shipping_address or {}
    return str(address.get("country_code") or "").strip().upper()


def carrier_mapping_find(
    *, channel: Channel, code: str, destination_country: str
) -> CarrierCodeMapping | None:
    """Find the most specific mapping for a channel's code; None when the code is unknown."""
    normalized = normalize_carrier_code(code)
    if not normalized:
        return None
    # Hand-written SQL, because it runs for every order and building it with the ORM cost
    # more Python time than the query takes.
    with connection.cursor() as cursor:
        cursor.execute(MAPPING_FIND_QUERY, [normalized, channel.pk, destination_country])
        row = cursor.fetchone()
    if row is None:
        return None
    mapping_end = len(CarrierCodeMapping._meta.concrete_fields)
    service_end = mapping_end + len(CarrierService._meta.concrete_fields)
    mapping = instance_from_row(CarrierCodeMapping, row[:mapping_end], using=connection.alias)
    service = instance_from_row(
        CarrierService, row[mapping_end:service_end], using=connection.alias
    )
    carrier = instance_from_row(Carrier, row[service_end:], using=connection.alias)
    CarrierService._meta.get_field("carrier").set_cached_value(service, carrier)
    CarrierCodeMapping._meta.get_field("service").set_cached_value(mapping, service)
    return mapping


def order_needs_delivery(order: Order) -> bool:
    """Return whether the order ships to an address: it has shipping lines and is no pickup.

    An order whose first shipping line is still unmapped counts as shipped, because only a
    mapped pickup service shows that no address is needed.
    """
    if not order.shipping_lines:
        return False
    service = order.carrier_service
    return service is None or service.service_level != ServiceLevel.PICKUP


def carrier_service_choices(*, shipping_line: dict) -> list[dict]:
    """List every service, the most similar to the shipping line's title and source first."""
    query = " ".join(
        part
        for part in (shipping_line.get("title"), shipping_line.get("source"))
        if part and part != "shopify"
    ).replace("_", " ")
    choices = []
    for service in CarrierService.objects.select_related("carrier"):
        score = fuzz.token_set_ratio(
            query, f"{service.carrier.name} {service.name}", processor=utils.default_process
        )
        choices.append(
            {
                "service_id": service.pk,
                "carrier": service.carrier.name,
                "name": service.name,
                "service_level": service.service_level,
                "score": round(score),
            }
        )
    return sorted(choices, key=lambda choice: (-choice["score"], choice["name"]))


def carrier_mapping_create(
    *,
    channel: Channel | None,
    code: str,
    destination_country: str,
    service: CarrierService,
    actor: AbstractBaseUser | None,
    reason: str,
) -> CarrierCodeMapping:
    """Map a code to a service. The same code mapped to another service is a conflict.

    Mapping it to the same service again returns the existing mapping. Nothing is ever
    overwritten here: changing a mapping is an ops manager's edit in the admin.
    """
    normalized = normalize_carrier_code(code)
    scope = {"channel": channel, "destination_country": destination_country}
    with transaction.atomic():
        mapping = _mapping_in_scope(normalized, **scope)
        if mapping is None:
            try:
                with transaction.atomic():
                    mapping = CarrierCodeMapping.objects.create(code=code, service=service, **scope)
            except IntegrityError:
                # Another transaction created it first, so compare with its service.
                mapping = _mapping_in_scope(normalized, **scope)
            else:
                audit_record(
                    action="carrier_mapping.created",
                    target_type="carrier_code_mapping",
                    target_id=mapping.pk,
                    actor=actor,
                    system_label="" if actor else "carrier mapping",
                    reason=reason,
                    after=_mapping_state(mapping),
                )
                return mapping
        if mapping.service_id != service.pk:
            raise CarrierMappingConflict(mapping, service)
    return mapping


def carrier_mapping_save(
    *, mapping: CarrierCodeMapping, actor: AbstractBaseUser, reason: str
) -> list:
    """Save a mapping edited in the admin, audit it, and settle the items it now resolves."""
    with transaction.atomic():
        before = None
        if mapping.pk is not None:
            before = (
                CarrierCodeMapping.objects.select_for_update(of=("self",))
                .select_related("channel", "service")
                .filter(pk=mapping.pk)
                .first()
            )
        mapping.save()
        audit_record(
            action="carrier_mapping.created" if before is None else "carrier_mapping.changed",
            target_type="carrier_code_mapping",
            target_id=mapping.pk,
            actor=actor,
            reason=reason,
            before=_mapping_state(before) if before else None,
            after=_mapping_state(mapping),
        )
        return review_items_resolve_by_carrier_mapping(
            mapping=mapping, actor=actor, cause=f"carrier mapping #{mapping.pk} saved"
        )


def carrier_mapping_delete(
    *, mapping: CarrierCodeMapping, actor: AbstractBaseUser, reason: str
) -> None:
    with transaction.atomic():
        state = _mapping_state(mapping)
        target_id = mapping.pk
        mapping.delete()
        audit_record(
            action="carrier_mapping.deleted",
            target_type="carrier_code_mapping",
            target_id=target_id,
            actor=actor,
            reason=reason,
            before=state,
        )


def order_carrier_service_set(
    *,
    order: Order,
    service: CarrierService | None,
    actor: AbstractBaseUser | None,
    reason: str,
) -> None:
    """Record the order's canonical carrier service. Call with the order locked."""
    if order.carrier_service_id == (service.pk if service else None):
        return
    before = str(order.carrier_service) if order.carrier_service_id else None
    order.carrier_service = service
    order.save(update_fields=["carrier_service", "updated_at"])

    audit_record(
        action="order.carrier_service_set",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label="" if actor else "carrier mapping",
        reason=reason,
        before={"carrier_service": before},
        after={"carrier_service": str(service) if service else None},
    )
    order_event_add(
        order=order,
        kind="order.carrier_set",
        message=f"Carrier service set to {service}: {reason}.",
        actor=actor,
        data={"carrier_service": service.pk if service else None},
    )


def order_carrier_service_refresh(
    *, order: Order, actor: AbstractBaseUser | None, reason: str
) -> None:
    """Set the order's service from its first shipping line's mapping, when there is one."""
    if not order.shipping_lines:
        return
    mapping = carrier_mapping_find(
        channel=order.channel,
        code=shipping_line_code(order.shipping_lines[0]),
        destination_country=order_destination_country(order),
    )
    if mapping is not None:
        order_carrier_service_set(order=order, service=mapping.service, actor=actor, reason=reason)


def carrier_code_accept(
    *, item, order: Order, user: AbstractBaseUser, service_id: int | None = None
) -> dict:
    """Accept handler for unknown carrier codes: map the code to the chosen service.

    Without `service_id` the suggested service is taken, when there is one. The mapping is
    scoped to the order's channel and destination country (see the item's proposal), and
    settles the other open items that wait on the same code there.
    """
    from reviews.services import ReviewConflict, ReviewError

    proposal = item.proposal
    code = proposal.get("code", "")
    service_id = service_id or proposal.get("suggested_service_id")
    if service_id is None:
        raise ReviewError(
            "service_required", f"Choose the carrier service that code {code!r} stands for."
        )
    service = CarrierService.objects.select_related("carrier").filter(pk=service_id).first()
    if service is None:
        raise ReviewError("invalid_service", f"Carrier service id {service_id} does not exist.")

    reason = f"Accepted in review item #{item.pk}"
    service_before = order.carrier_service_id
    mapping = None
    others = []
    if normalize_carrier_code(code):
        try:
            mapping = carrier_mapping_create(
                channel=order.channel,
                code=code,
                destination_country=proposal.get("destination_country", ""),
                service=service,
                actor=user,
                reason=reason,
            )
        except CarrierMappingConflict as conflict:
            raise ReviewConflict("mapping_conflict", str(conflict)) from None
        order_carrier_service_refresh(order=order, actor=user, reason=reason)
        others = review_items_resolve_by_carrier_mapping(
            mapping=mapping,
            actor=user,
            cause=f"carrier mapping created in review item #{item.pk}",
            exclude_item_id=item.pk,
        )
    elif proposal.get("shipping_line") == 1:
        # A line without any code cannot be mapped, so the service is set for this order.
        order_carrier_service_set(order=order, service=service, actor=user, reason=reason)
    if order.carrier_service_id != service_before:
        order_version_bump(order, reason=f"carrier code accepted in review item #{item.pk}")

    return {
        "code": code,
        "service_id": service.pk,
        "service": str(service),
        "mapping_id": mapping.pk if mapping else None,
        "also_resolves": [other.pk for other in others],
    }


def review_items_resolve_by_carrier_mapping(
    *,
    mapping: CarrierCodeMapping,
    actor: AbstractBaseUser | None,
    cause: str,
    exclude_item_id: int | None = None,
) -> list:
    """Settle the open unknown-carrier-code items whose code `mapping` now maps.

    Each such order gets its carrier service, the item is marked resolved, and the order is
    released when nothing else holds it. Call inside a transaction.
    """
    from reviews.models import ReviewItem, ReviewKind, ReviewStatus
    from reviews.services import _item_close, _reasons_without_item

    waiting = ReviewItem.objects.filter(
        kind=ReviewKind.CARRIER_CODE,
        status=ReviewStatus.OPEN,
        proposal__normalized_code=mapping.normalized_code,
    ).exclude(pk=exclude_item_id)
    if mapping.channel_id is not None:
        waiting = waiting.filter(order__channel_id=mapping.channel_id)
    if mapping.destination_country:
        waiting = waiting.filter(proposal__destination_country=mapping.destination_country)

    resolved = []
    for item_id, order_id in waiting.order_by("order_id", "pk").values_list("pk", "order_id"):
        # A reviewer accepting this item may hold its row or its order's, and wait for a
        # lock the caller holds (the channel row, the mapping insert): waiting here would
        # deadlock, so locked rows are skipped. NOTE: an order locked for any other reason
        # is skipped too. Its item stays open until someone accepts it, and that accept
        # then finds this mapping.
        order = (
            Order.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel")
            .filter(pk=order_id)
            .first()
        )
        if order is None:
            continue
        item = (
            ReviewItem.objects.select_for_update(skip_locked=True)
            .filter(pk=item_id, status=ReviewStatus.OPEN)
            .first()
        )
        if item is None:
            continue  # Decided meanwhile, or being decided right now.
        item.order = order
        found = carrier_mapping_find(
            channel=order.channel,
            code=item.proposal["code"],
            destination_country=item.proposal.get("destination_country", ""),
        )
        if found is None:
            continue

        service_before = order.carrier_service_id
        order_carrier_service_refresh(order=order, actor=actor, reason=cause)
        if order.carrier_service_id != service_before:
            order_version_bump(order, reason=cause)
        _item_close(
            item=item,
            status=ReviewStatus.RESOLVED,
            user=actor,
            decision={
                "code": item.proposal["code"],
                "service_id": found.service_id,
                "service": str(found.service),
                "mapping_id": found.pk,
            },
            note=cause,
        )
        if order.status == OrderStatus.ON_HOLD:
            order_update_hold_reasons(
                order=order, reasons=_reasons_without_item(order.hold_reasons, item), actor=actor
            )
        resolved.append(item)
    if resolved:
        logger.info(
            "carrier code items resolved by mapping",
            extra={"mapping": mapping.pk, "review_items": [item.pk for item in resolved]},
        )
    return resolved


def _mapping_in_scope(
    normalized: str, *, channel: Channel | None, destination_country: str
) -> CarrierCodeMapping | None:
    return (
        CarrierCodeMapping.objects.select_for_update(of=("self",))
        .select_related("channel", "service")
        .filter(
            channel=channel,
            destination_country=destination_country,
            normalized_code=normalized,
        )
        .first()
    )


def _mapping_state(mapping: CarrierCodeMapping) -> dict:
    return {
        "channel": mapping.channel.code if mapping.channel_id else None,
        "code": mapping.code,
        "destination_country": mapping.destination_country,
        "service": str(mapping.service),
        "service_id": mapping.service_id,
    }
