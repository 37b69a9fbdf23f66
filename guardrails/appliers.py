"""Appliers: how OMS Guard carries out, and reverts, the actions a decision may apply.

Each applier validates a proposal's shape, reads the order's current state in that shape (for
the stale-state check), applies `after` and reverts to `before`. They go through the same
order and stock services a person's change does, so every change leaves an audit entry and
a timeline event. Call them inside a transaction with the order locked.

Actions without an applier (splitting an order across carriers, ship date estimates,
packaging suggestions) only get their proposal shape checked here.
"""

import datetime
import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from catalog.models import Sku
from omsguard.json_fields import bidi_controls_in
from orders.models import CarrierService, Order, OrderLine, OrderStatus, ServiceLevel

from .models import Decision
from .selectors import shared_config_read
from .services import DecisionConflict, DecisionError

logger = logging.getLogger(__name__)


class Applier:
    """The interface every applier implements."""

    action_code = ""
    # False where the queued proposal's own hold changes the state the agent saw (status).
    checks_before_on_accept = True

    def validate(self, order: Order, before: dict, after: dict) -> None:
        raise NotImplementedError

    def current(self, order: Order, before: dict) -> dict:
        raise NotImplementedError

    def apply(
        self,
        order: Order,
        decision: Decision,
        actor_label: str,
        *,
        user: AbstractBaseUser | None = None,
    ) -> dict:
        """Apply `decision.after`. `actor_label` names the automation when `user` is None."""
        raise NotImplementedError

    def revert(self, order: Order, decision: Decision, user: AbstractBaseUser) -> dict:
        raise NotImplementedError


def _actor(user: AbstractBaseUser | None, actor_label: str) -> dict:
    """Build the actor keywords of the order services: a person, else the automation's label."""
    if user is not None:
        return {"actor": user, "system_label": ""}
    return {"actor": None, "system_label": actor_label}


def _invalid(field: str, message: str) -> DecisionError:
    return DecisionError("invalid_proposal", message, field=field)


def _check_keys(value: dict, field: str, keys: set[str]) -> None:
    if set(value) != keys:
        expected = ", ".join(sorted(keys))
        raise _invalid(field, f"Expected exactly the keys {expected}; got {sorted(value)}.")


# --- Substitute a SKU on a line ------------------------------------------------------------


class SubstituteSkuApplier(Applier):
    action_code = "substitute_sku"

    def validate(self, order: Order, before: dict, after: dict) -> None:
        for field, value in (("before", before), ("after", after)):
            _check_keys(value, field, {"line", "sku"})
            if not isinstance(value["line"], int) or isinstance(value["line"], bool):
                raise _invalid(field, "`line` must be the line's position, an integer.")
        if not isinstance(after["sku"], str) or not after["sku"]:
            raise _invalid("after", "`sku` must be a SKU code.")
        if after["line"] != before["line"]:
            raise _invalid("after", "`line` must be the same line as in `before`.")
        line = order.lines.filter(position=after["line"]).first()
        if line is None:
            raise _invalid("after", f"The order has no line {after['line']}.")
        if line.sku_id is None:
            raise _invalid(
                "after",
                f"Line {line.position} has no mapped SKU; map it in the unmapped-SKU queue "
                "before proposing a substitute.",
            )
        if not Sku.objects.filter(code=after["sku"], is_active=True).exists():
            raise _invalid("after", f"SKU {after['sku']!r} does not exist or is inactive.")
        if after["sku"] == before["sku"]:
            raise _invalid("after", "The substitute is the SKU the line already has.")

    def current(self, order: Order, before: dict) -> dict:
        line = _line(order, before["line"])
        return {"line": line.position, "sku": line.sku.code if line.sku_id else None}

    def apply(self, order, decision, actor_label, *, user=None) -> dict:
        sku = Sku.objects.get(code=decision.after["sku"])
        reason = f"decision #{decision.pk}"
        line, reserved = _line_switch_sku(order, decision.after["line"], sku, user, actor_label)
        if reserved is False:
            raise DecisionConflict(
                "stock_short", f"{sku.code} has too little stock at any one location: {reason}."
            )
        moot = _out_of_stock_items_resolve(order, line, sku, decision)
        return {"line": line.position, "sku": sku.code, "reserved": reserved, "resolved": moot}

    def revert(self, order, decision, user) -> dict:
        sku = Sku.objects.filter(code=decision.before["sku"]).first()
        if sku is None:
            raise DecisionConflict(
                "sku_missing", f"The original SKU {decision.before['sku']!r} no longer exists."
            )
        line, reserved = _line_switch_sku(order, decision.before["line"], sku, user, "")
        # NOTE: the original SKU was usually short, so the line may stay unreserved. The
        # result reports it, and a person restocks or substitutes again.
        return {"line": line.position, "sku": sku.code, "reserved": reserved}


def _out_of_stock_items_resolve(
    order: Order, line: OrderLine, sku: Sku, decision: Decision
) -> list[int]:
    """Close the line's out-of-stock items: the line now ships a SKU that is reserved."""
    from reviews.models import ReviewKind
    from reviews.services import review_items_resolve_for_line

    items = review_items_resolve_for_line(
        line=line,
        order=order,
        kinds=[ReviewKind.OUT_OF_STOCK],
        note=f"substituted by {sku.code} in decision #{decision.pk}",
        data={"substituted_by": sku.code, "ai_decision": decision.pk},
    )
    return [item.pk for item in items]


def _line(order: Order, position: int) -> OrderLine:
    line = order.lines.select_related("sku").filter(position=position).first()
    if line is None:
        raise DecisionConflict("line_missing", f"The order has no line {position}.")
    return line


def _line_switch_sku(
    order: Order, position: int, sku: Sku, user: AbstractBaseUser | None, actor_label: str
) -> tuple[OrderLine, bool | None]:
    """Move a line to another SKU and its reservation with it.

    Returns the line and whether the new SKU is reserved (None: it is not stock-tracked).
    """
    from inventory.models import Reservation, ReservationStatus
    from inventory.reservations import order_line_reserve_stock, reservation_release
    from orders.services import order_line_sku_substitute

    line = _line(order, position)
    line.order = order
    reason = f"Line {position} switched to {sku.code}"
    for reservation_id in Reservation.objects.filter(
        order_line=line, status=ReservationStatus.ACTIVE
    ).values_list("pk", flat=True):
        reservation_release(reservation_id=reservation_id, actor=user, reason=reason)

    order_line_sku_substitute(line=line, sku=sku, reason=reason, **_actor(user, actor_label))

    result = order_line_reserve_stock(line=line, actor=user)
    if result.short:
        return line, False
    return line, None if result.untracked else True


# --- Shipping and billing addresses --------------------------------------------------------


class AddressApplier(Applier):
    def __init__(self, action_code: str, field: str) -> None:
        self.action_code = action_code
        self.field = field

    def validate(self, order: Order, before: dict, after: dict) -> None:
        _check_keys(before, "before", {self.field})
        _check_keys(after, "after", {self.field})
        if before[self.field] is not None and not isinstance(before[self.field], dict):
            raise _invalid("before", f"`{self.field}` must be an address object or null.")
        address = after[self.field]
        if not isinstance(address, dict) or not address:
            raise _invalid("after", f"`{self.field}` must be an address object.")
        if not all(isinstance(value, str | None) for value in address.values()):
            raise _invalid("after", "Address fields must be text or null.")
        for key, value in address.items():
            controls = bidi_controls_in(value) if value else []
            if controls:
                raise _invalid(
                    "after",
                    f"`{self.field}.{key}` contains Unicode bidirectional control characters "
                    f"({', '.join(controls)}), which can make it display in another order. "
                    "Remove them.",
                )
        if self.field == "shipping_address":
            _shipping_address_check(address)

    def current(self, order: Order, before: dict) -> dict:
        return {self.field: getattr(order, self.field)}

    def apply(self, order, decision, actor_label, *, user=None) -> dict:
        return self._set(order, decision.after[self.field], decision, user, actor_label)

    def revert(self, order, decision, user) -> dict:
        return self._set(order, decision.before[self.field], decision, user, "")

    def _set(self, order, address, decision, user, actor_label) -> dict:
        from orders.services import order_address_set

        order_address_set(
            order=order,
            field=self.field,
            address=address,
            reason=f"decision #{decision.pk}",
            **_actor(user, actor_label),
        )
        result: dict[str, Any] = {"field": self.field}
        if self.field == "shipping_address":
            result["address_score"] = str(order.address_score)
            result["resolved"] = _address_items_resolve(order, decision)
        return result


def _shipping_address_check(address: dict) -> None:
    """Refuse a shipping address its country's rules reject, as a reviewer's revision is.

    Applying it would release the order to ship to an address that cannot be delivered to,
    and close the order's address items as moot. An address that only scores low (warnings)
    may still be proposed; the policy decides who approves it.
    """
    from orders.addresses import Severity, address_validate

    errors = [r for r in address_validate(address).reasons if r.severity == Severity.ERROR]
    if errors:
        raise _invalid(
            "after",
            "The proposed shipping address fails its country's rules: "
            + " ".join(reason.message for reason in errors),
        )


def _address_items_resolve(order: Order, decision: Decision) -> list[int]:
    """Close the order's other address items: they were about the address just replaced."""
    from reviews.models import ReviewKind
    from reviews.services import review_items_resolve_moot

    items = review_items_resolve_moot(
        order=order,
        kinds=[ReviewKind.ADDRESS],
        note=f"the shipping address was replaced by decision #{decision.pk}",
        data={"ai_decision": decision.pk},
        exclude_item_id=decision.review_item_id,
    )
    return [item.pk for item in items]


# --- Carrier service -----------------------------------------------------------------------


class CarrierServiceApplier(Applier):
    def __init__(self, action_code: str) -> None:
        self.action_code = action_code

    def validate(self, order: Order, before: dict, after: dict) -> None:
        _check_keys(before, "before", {"carrier_service"})
        _check_keys(after, "after", {"carrier_service"})
        if before["carrier_service"] is not None and not isinstance(before["carrier_service"], str):
            raise _invalid("before", "`carrier_service` must be 'carrier/service' or null.")
        service = carrier_service_by_code(after["carrier_service"])
        if service is None:
            raise _invalid(
                "after",
                f"Unknown carrier service {after['carrier_service']!r}; use the carrier code and "
                "the service code, e.g. 'ups/ground'.",
            )
        if self.action_code == "select_carrier" and _is_downgrade(order.carrier_service, service):
            # Otherwise a carrier pick would get round the downgrade policy, which blocks.
            raise _invalid(
                "after",
                f"{service.name} is a slower service level than the order's "
                f"{order.carrier_service.name}; propose downgrade_shipping_service instead.",
            )

    def current(self, order: Order, before: dict) -> dict:
        return {"carrier_service": carrier_service_code(order.carrier_service)}

    def apply(self, order, decision, actor_label, *, user=None) -> dict:
        service = carrier_service_by_code(decision.after["carrier_service"])
        return self._set(order, service, decision, user, actor_label)

    def revert(self, order, decision, user) -> dict:
        code = decision.before["carrier_service"]
        service = carrier_service_by_code(code) if code else None
        if code and service is None:
            raise DecisionConflict("service_missing", f"Carrier service {code!r} no longer exists.")
        return self._set(order, service, decision, user, "")

    def _set(self, order, service, decision, user, actor_label) -> dict:
        from orders.services import order_carrier_service_change

        order_carrier_service_change(
            order=order,
            service=service,
            reason=f"decision #{decision.pk}",
            **_actor(user, actor_label),
        )
        return {"carrier_service": carrier_service_code(service)}


# Service levels from slowest to fastest; pickup is not a delivery speed and is left out.
SERVICE_LEVEL_SPEED = {
    ServiceLevel.ECONOMY: 0,
    ServiceLevel.GROUND: 1,
    ServiceLevel.EXPEDITED: 2,
    ServiceLevel.OVERNIGHT: 3,
}


def _is_downgrade(current: CarrierService | None, proposed: CarrierService) -> bool:
    if current is None:
        return False
    current_speed = SERVICE_LEVEL_SPEED.get(current.service_level)
    proposed_speed = SERVICE_LEVEL_SPEED.get(proposed.service_level)
    if current_speed is None or proposed_speed is None:
        return False
    return proposed_speed < current_speed


def carrier_service_by_code(code: Any) -> CarrierService | None:
    """Find the service for "carrier/service" codes, e.g. "ups/ground"; None when unknown."""
    if not isinstance(code, str) or code.count("/") != 1:
        return None
    carrier_code, service_code = code.split("/")

    def read() -> CarrierService | None:
        return (
            CarrierService.objects.select_related("carrier")
            .filter(carrier__code=carrier_code, code=service_code)
            .first()
        )

    # A decision validates the proposal and then applies it: both find the same service.
    return shared_config_read(("carrier_service", code), read)


def carrier_service_code(service: CarrierService | None) -> str | None:
    return f"{service.carrier.code}/{service.code}" if service is not None else None


# --- Fulfilment location and pickup --------------------------------------------------------


class RerouteApplier(Applier):
    action_code = "reroute_fulfilment"

    def validate(self, order: Order, before: dict, after: dict) -> None:
        from inventory.models import Location

        for field, value in (("before", before), ("after", after)):
            _check_keys(value, field, {"location", "in_store_pickup"})
            if not isinstance(value["in_store_pickup"], bool):
                raise _invalid(field, "`in_store_pickup` must be true or false.")
        if before["location"] is not None and not isinstance(before["location"], str):
            raise _invalid("before", "`location` must be a location code or null.")
        location = after["location"]
        if (
            not isinstance(location, str)
            or not Location.objects.filter(code=location, is_active=True).exists()
        ):
            raise _invalid("after", f"Unknown or inactive location {location!r}.")

    def current(self, order: Order, before: dict) -> dict:
        from inventory.models import Reservation, ReservationStatus

        codes = sorted(
            set(
                Reservation.objects.filter(order=order, status=ReservationStatus.ACTIVE)
                .values_list("stock_level__location__code", flat=True)
                .distinct()
            )
        )
        # Reservations at several places are reported as a list, which never matches a
        # proposal's single location, so such an order is always stale for a reroute.
        location: str | list[str] | None = codes[0] if len(codes) == 1 else (codes or None)
        return {"location": location, "in_store_pickup": order.in_store_pickup}

    def apply(self, order, decision, actor_label, *, user=None) -> dict:
        return self._move(order, decision.after, decision, user, actor_label)

    def revert(self, order, decision, user) -> dict:
        return self._move(order, decision.before, decision, user, "")

    def _move(self, order, target: dict, decision, user, actor_label) -> dict:
        from orders.services import order_pickup_set

        reason = f"decision #{decision.pk}"
        moved = 0
        if target["location"] is not None:
            moved = _reservations_move(order, target["location"], user, reason)
        order_pickup_set(
            order=order,
            in_store_pickup=target["in_store_pickup"],
            reason=reason,
            **_actor(user, actor_label),
        )
        return {
            "location": target["location"],
            "in_store_pickup": target["in_store_pickup"],
            "moved": moved,
        }


def _reservations_move(
    order: Order, location_code: str, user: AbstractBaseUser | None, reason: str
) -> int:
    """Move every active reservation of the order to one location; return how many moved.

    Raises DecisionConflict when the location lacks a line's stock. The caller's transaction
    then rolls the releases back.
    """
    from inventory.models import Reservation, ReservationStatus

    # NOTE: inventory.reservations has no public "reserve at this location"; these two
    # private helpers keep the stock-level locking order and audit of a normal reservation.
    from inventory.reservations import _levels_lock, _reserve, reservation_release

    reservations = list(
        Reservation.objects.filter(order=order, status=ReservationStatus.ACTIVE)
        .select_related("order_line__sku", "stock_level__location")
        .order_by("pk")
    )
    to_move = [r for r in reservations if r.stock_level.location.code != location_code]
    for reservation in to_move:
        reservation_release(reservation_id=reservation.pk, actor=user, reason=reason)

    levels = _levels_lock(sku_ids={r.order_line.sku_id for r in to_move})
    for reservation in to_move:
        line = reservation.order_line
        level = next(
            (lvl for lvl in levels.get(line.sku_id, []) if lvl.location.code == location_code),
            None,
        )
        if level is None or level.available < line.quantity:
            available = level.available if level is not None else 0
            raise DecisionConflict(
                "location_short",
                f"{location_code} has {available} of {line.sku.code} available; line "
                f"{line.position} needs {line.quantity}.",
            )
        _reserve(order=order, line=line, level=level, actor=user)
    return len(to_move)


# --- Cancel the order ----------------------------------------------------------------------


class CancelOrderApplier(Applier):
    action_code = "cancel_order"
    # Queuing puts the order on hold, so its status differs from `before` when it is accepted.
    checks_before_on_accept = False

    def validate(self, order: Order, before: dict, after: dict) -> None:
        _check_keys(before, "before", {"status"})
        if after != {"status": OrderStatus.CANCELLED}:
            raise _invalid("after", 'A cancellation proposes {"status": "cancelled"}.')
        if order.status == OrderStatus.CANCELLED:
            raise DecisionConflict("order_cancelled", f"Order {order.pk} is already cancelled.")

    def current(self, order: Order, before: dict) -> dict:
        return {"status": order.status}

    def apply(self, order, decision, actor_label, *, user=None) -> dict:
        from orders.services import order_cancel_by_decision

        previous = order.status
        order_cancel_by_decision(
            order=order,
            reason=f"decision #{decision.pk}",
            keep_review_item=decision.review_item_id,
            **_actor(user, actor_label),
        )
        return {"status": order.status, "previous_status": previous}

    def revert(self, order, decision, user) -> dict:
        from inventory.reservations import order_reserve_stock
        from orders.services import order_reinstate

        status = decision.before["status"]
        hold_reasons = []
        if status == OrderStatus.ON_HOLD:
            # The earlier hold reasons named review items the cancellation closed.
            hold_reasons = [
                {
                    "severity": "hold",
                    "code": "cancellation_reverted",
                    "message": f"Cancellation by decision #{decision.pk} reverted; check the order",
                }
            ]
        order_reinstate(
            order=order,
            status=status,
            hold_reasons=hold_reasons,
            actor=user,
            reason=f"revert of decision #{decision.pk}",
        )
        result = order_reserve_stock(order=order, actor=user)
        if result.short:
            short = "; ".join(shortage.describe() for shortage in result.short)
            raise DecisionConflict("stock_gone", f"The order's stock is gone: {short}.")
        return {"status": status, "reserved": len(result.reserved)}


# --- Actions without an applier: shape checks only -----------------------------------------


def _validate_split(order: Order, before: dict, after: dict) -> None:
    shipments = after.get("shipments")
    if set(after) != {"shipments"} or not isinstance(shipments, list) or len(shipments) < 2:
        raise _invalid("after", "`shipments` must list at least two shipments.")
    positions = set(order.lines.values_list("position", flat=True))
    for shipment in shipments:
        if not isinstance(shipment, dict) or set(shipment) != {"lines", "carrier_service"}:
            raise _invalid("after", "Each shipment has exactly `lines` and `carrier_service`.")
        lines = shipment["lines"]
        if not isinstance(lines, list) or not lines or not set(lines) <= positions:
            raise _invalid("after", f"Shipment lines must be positions of the order: {positions}.")
        if carrier_service_by_code(shipment["carrier_service"]) is None:
            raise _invalid("after", f"Unknown carrier service {shipment['carrier_service']!r}.")


def _validate_ship_date(order: Order, before: dict, after: dict) -> None:
    value = after.get("ship_date")
    try:
        datetime.date.fromisoformat(value if isinstance(value, str) else "")
    except ValueError:
        raise _invalid("after", "`ship_date` must be a date, e.g. 2026-12-07.") from None
    if set(after) != {"ship_date"}:
        raise _invalid("after", "Expected exactly the key ship_date.")


def _validate_packaging(order: Order, before: dict, after: dict) -> None:
    if set(after) != {"package"} or not isinstance(after["package"], str) or not after["package"]:
        raise _invalid("after", "Expected exactly the key package, a package code.")


APPLIERS: dict[str, Applier] = {
    applier.action_code: applier
    for applier in (
        SubstituteSkuApplier(),
        AddressApplier("correct_shipping_address", "shipping_address"),
        AddressApplier("change_billing_address", "billing_address"),
        CarrierServiceApplier("select_carrier"),
        CarrierServiceApplier("downgrade_shipping_service"),
        RerouteApplier(),
        CancelOrderApplier(),
    )
}

SHAPE_VALIDATORS = {
    "split_order_carriers": _validate_split,
    "estimate_ship_date": _validate_ship_date,
    "suggest_packaging": _validate_packaging,
}


def applier_for(action_code: str) -> Applier | None:
    return APPLIERS.get(action_code)


def proposal_validate(*, action_code: str, order: Order, before: dict, after: dict) -> None:
    """Check a proposal's shape for its action; raises DecisionError on field before/after."""
    applier = applier_for(action_code)
    if applier is not None:
        applier.validate(order, before, after)
        return
    validator = SHAPE_VALIDATORS.get(action_code)
    if validator is not None:
        validator(order, before, after)
