"""Reads for stock: availability with its snapshot age, for people and automated decisions."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from catalog.models import Sku

from .models import Location, Replenishment, StockLevel


@dataclass(frozen=True)
class Availability:
    """Stock of one SKU at one location, or summed over the active locations (location None).

    `as_of` is the snapshot time the numbers rest on: for a sum, the oldest snapshot in it.
    `is_stale` is true when that snapshot is older than OMSGUARD_STOCK_TTL_SECONDS, or when no
    count has ever arrived. `tracked` is false for a SKU with no stock level anywhere.
    """

    sku: str
    location: str | None
    on_hand: int
    reserved: int
    available: int
    as_of: datetime | None
    is_stale: bool
    tracked: bool

    def as_dict(self) -> dict:
        return {
            "sku": self.sku,
            "location": self.location,
            "on_hand": self.on_hand,
            "reserved": self.reserved,
            "available": self.available,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "is_stale": self.is_stale,
        }


def stock_ttl() -> timedelta:
    return timedelta(seconds=settings.OMSGUARD_STOCK_TTL_SECONDS)


def snapshot_is_stale(counted_at: datetime | None, *, now: datetime | None = None) -> bool:
    if counted_at is None:
        return True
    return (now or timezone.now()) - counted_at > stock_ttl()


def level_availability(level: StockLevel, *, now: datetime | None = None) -> Availability:
    """Return the availability of one stock level row as the caller read (or locked) it."""
    return Availability(
        sku=level.sku.code,
        location=level.location.code,
        on_hand=level.on_hand,
        reserved=level.reserved,
        available=level.available,
        as_of=level.counted_at,
        is_stale=snapshot_is_stale(level.counted_at, now=now),
        tracked=True,
    )


def stock_availability(*, sku: Sku, location: Location | None = None) -> Availability:
    """Return the stock of `sku` at `location`, or summed over all active locations.

    Use this (not the StockLevel rows) for any automated decision, because it returns the
    staleness with the numbers.
    """
    levels = stock_levels_for_sku(sku=sku)
    if location is not None:
        levels = levels.filter(location=location)
    else:
        levels = levels.filter(location__is_active=True)
    levels = list(levels)

    now = timezone.now()
    if location is not None and levels:
        return level_availability(levels[0], now=now)

    tracked = levels != [] or sku_is_stock_tracked(sku=sku)
    # A sum is only as fresh as its oldest part, and a level never counted has no time.
    counted = [level.counted_at for level in levels]
    as_of = min(counted) if counted and None not in counted else None
    on_hand = sum(level.on_hand for level in levels)
    reserved = sum(level.reserved for level in levels)
    return Availability(
        sku=sku.code,
        location=location.code if location is not None else None,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        as_of=as_of,
        is_stale=snapshot_is_stale(as_of, now=now),
        tracked=tracked,
    )


def stock_levels_for_sku(*, sku: Sku) -> QuerySet[StockLevel]:
    return StockLevel.objects.filter(sku=sku).select_related("sku", "location").order_by("pk")


def sku_is_stock_tracked(*, sku: Sku) -> bool:
    """Return whether the SKU is tracked, meaning it has a stock level at any location."""
    return StockLevel.objects.filter(sku=sku).exists()


def stock_level_list() -> QuerySet[StockLevel]:
    return StockLevel.objects.select_related("sku", "location").order_by(
        "sku__code", "location__code"
    )


def replenishment_eta(sku: Sku) -> datetime | None:
    """Return when the next replenishment of `sku` arrives at an active location, or None.

    Arrivals already in the past are ignored: they either arrived as stock events or are late,
    and a late arrival is no promise.
    """
    return (
        Replenishment.objects.filter(
            sku=sku, location__is_active=True, expected_at__gt=timezone.now()
        )
        .order_by("expected_at")
        .values_list("expected_at", flat=True)
        .first()
    )
