"""Carrier rate changes with sign-off above the swap threshold, and alert deduplication."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import IntegrityError, transaction
from django.urls import reverse

from guardrails.models import AuditEntry
from guardrails.recommenders.carrier import carrier_recommend
from guardrails.recommenders.rates import (
    carrier_rate_approve,
    carrier_rate_change,
    carrier_rate_reject,
)
from monitoring.models import Alert, AlertStatus, Severity
from monitoring.services import alert_raise, alert_resolve
from orders.models import CarrierRate, CarrierRateStatus

from .recommender_fixtures import (
    order_create,
    rate_create,
    service_get,
    service_set,
    sku_create,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def lane(default_policies, channel, carriers):
    """Ten US ground orders this week; UPS (10.00) beats USPS (9.50) on reliability."""
    service_set("ups/ground", reliability="0.96", transit_days=5)
    service_set("usps/ground_advantage", reliability="0.90", transit_days=5)
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "9.50")
    shirt = sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M")
    return [order_create(channel, [(shirt, 1, "19.99")], number=n) for n in range(10)]


def usps_change(price: str, user=None):
    return carrier_rate_change(
        service=service_get("usps/ground_advantage"),
        price=Decimal(price),
        currency="USD",
        destination_country="US",
        user=user,
        note="Contract renewal",
    )


def active_usps_price() -> Decimal:
    return CarrierRate.objects.get(
        service=service_get("usps/ground_advantage"), status=CarrierRateStatus.ACTIVE
    ).price


def test_change_below_threshold_activates(lane, ops):
    change = usps_change("9.40", user=ops)

    assert (change.orders_checked, change.orders_swapped) == (10, 0)
    assert change.needs_signoff is False
    assert change.rate.status == CarrierRateStatus.ACTIVE
    assert active_usps_price() == Decimal("9.40")
    assert CarrierRate.objects.filter(status=CarrierRateStatus.SUPERSEDED).count() == 1
    assert not Alert.objects.exists()
    assert AuditEntry.objects.filter(action="carrier_rate.activated", actor=ops).count() == 1


def test_change_above_threshold_waits_for_signoff(lane, ops):
    change = usps_change("7.00", user=ops)

    assert (change.orders_checked, change.orders_swapped) == (10, 10)
    assert change.swap_share == Decimal("1")
    assert change.rate.status == CarrierRateStatus.PENDING_SIGNOFF
    assert active_usps_price() == Decimal("9.50"), "the pending rate is not used"
    assert carrier_recommend(order=lane[0]).chosen["carrier_service"] == "ups/ground"

    alert = Alert.objects.get()
    assert alert.severity == Severity.ACTIONABLE
    assert alert.status == AlertStatus.OPEN
    assert alert.owner_group == "ops_manager"
    assert alert.runbook.startswith("1. Approve or reject the pending rate in the admin")
    assert alert.data["orders_swapped"] == 10


def test_share_equal_to_threshold_activates(lane, settings):
    settings.OMSGUARD_CARRIER_RATE_SIGNOFF_SHARE = "1.0"

    change = usps_change("7.00")

    assert change.swap_share == Decimal("1")
    assert change.rate.status == CarrierRateStatus.ACTIVE


def test_orders_outside_window_are_ignored(default_policies, channel, carriers):
    service_set("ups/ground", reliability="0.96", transit_days=5)
    service_set("usps/ground_advantage", reliability="0.90", transit_days=5)
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "9.50")
    shirt = sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M")
    with time_machine.travel(NOW - timedelta(days=8), tick=False):
        for number in range(5):
            order_create(channel, [(shirt, 1, "19.99")], number=number)
    order_create(channel, [(shirt, 1, "19.99")], number=9, country="CA")

    change = usps_change("7.00")

    assert change.orders_checked == 0, "old orders and other countries are not in the lane"
    assert change.rate.status == CarrierRateStatus.ACTIVE


def test_approve_activates_and_resolves_alert(lane, ops):
    pending = usps_change("7.00").rate

    carrier_rate_approve(rate_id=pending.pk, user=ops)

    pending.refresh_from_db()
    assert pending.status == CarrierRateStatus.ACTIVE
    assert pending.approved_by == ops
    assert active_usps_price() == Decimal("7.00")
    assert Alert.objects.get().status == AlertStatus.RESOLVED
    assert carrier_recommend(order=lane[0]).chosen["carrier_service"] == "usps/ground_advantage"
    assert AuditEntry.objects.filter(action="carrier_rate.approved", actor=ops).exists()


def test_reject_keeps_old_rate(lane, ops):
    pending = usps_change("7.00").rate

    carrier_rate_reject(rate_id=pending.pk, user=ops, note="Typo")

    pending.refresh_from_db()
    assert pending.status == CarrierRateStatus.REJECTED
    assert active_usps_price() == Decimal("9.50")
    assert Alert.objects.get().status == AlertStatus.RESOLVED
    assert AuditEntry.objects.get(action="carrier_rate.rejected").reason == "Typo"
    with pytest.raises(ValueError, match="only a pending rate"):
        carrier_rate_approve(rate_id=pending.pk, user=ops)


def test_second_pending_change_shares_alert(lane, ops):
    first = usps_change("7.00").rate
    usps_change("6.00")

    alert = Alert.objects.get()
    assert alert.occurrences == 2
    carrier_rate_reject(rate_id=first.pk, user=ops)
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN, "another rate of the lane still waits"


def test_admin_add_and_approve_action(lane, client, ops):
    client.force_login(ops)
    add_url = reverse("admin:orders_carrierrate_add")

    response = client.post(
        add_url,
        {
            "service": service_get("usps/ground_advantage").pk,
            "destination_country": "US",
            "max_weight_grams": "",
            "price": "7.00",
            "currency": "USD",
            "note": "New contract",
        },
    )

    assert response.status_code == 302, response.content
    pending = CarrierRate.objects.get(status=CarrierRateStatus.PENDING_SIGNOFF)
    assert pending.created_by == ops

    changelist = reverse("admin:orders_carrierrate_changelist")
    response = client.post(
        changelist, {"action": "approve_pending", "_selected_action": [pending.pk]}
    )

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == CarrierRateStatus.ACTIVE
    assert pending.approved_by == ops


def test_admin_approve_needs_permission(lane, client, manager):
    pending = usps_change("7.00").rate
    manager.user_permissions.add(Permission.objects.get(codename="view_carrierrate"))
    client.force_login(manager)
    changelist = reverse("admin:orders_carrierrate_changelist")

    listing = client.get(changelist)
    client.post(changelist, {"action": "approve_pending", "_selected_action": [pending.pk]})

    assert listing.status_code == 200
    assert "approve_pending" not in listing.content.decode()

    pending.refresh_from_db()
    assert pending.status == CarrierRateStatus.PENDING_SIGNOFF


def raise_alert(**overrides) -> Alert:
    fields = {
        "severity": Severity.ACTIONABLE,
        "source": "test",
        "dedup_key": "carrier_mix:shop",
        "title": "Carrier mix drifted",
        "owner_group": "ops_manager",
        "runbook": "1. Check the carrier rates.",
        "data": {"deviation": "0.35"},
    }
    return alert_raise(**(fields | overrides))


def test_alert_raise_deduplicates(db):
    first = raise_alert()
    second = raise_alert(data={"deviation": "0.41"}, severity=Severity.CRITICAL)

    assert second.pk == first.pk
    assert Alert.objects.count() == 1
    assert second.occurrences == 2
    assert second.severity == Severity.CRITICAL
    assert second.data == {"deviation": "0.41"}


def test_resolved_alert_reopens_as_new(db):
    first = raise_alert()
    resolved = alert_resolve(dedup_key="carrier_mix:shop", resolution="Mix back to baseline")

    second = raise_alert()

    assert resolved.pk == first.pk
    assert resolved.status == AlertStatus.RESOLVED
    assert resolved.resolved_at == NOW
    assert second.pk != first.pk
    assert second.status == AlertStatus.OPEN
    assert AuditEntry.objects.filter(action="alert.resolved", target_id=str(first.pk)).exists()


def test_resolve_without_open_alert_returns_none(db):
    assert alert_resolve(dedup_key="nothing-open") is None


def test_database_keeps_one_open_alert_per_key(db):
    raise_alert()

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(
            severity=Severity.INFORMATIONAL,
            source="test",
            dedup_key="carrier_mix:shop",
            title="Duplicate",
            owner_group="ops_manager",
            runbook="1. Nothing.",
        )


def test_invalid_severity_rejected(db):
    with pytest.raises(ValueError, match="Invalid alert severity"):
        raise_alert(severity="urgent")
