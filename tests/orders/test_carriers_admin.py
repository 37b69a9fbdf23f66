"""Carrier admin: who may see and edit carriers and code mappings, and what saving one does."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from guardrails.models import AuditEntry
from orders.models import Carrier, CarrierCodeMapping, CarrierService, Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.conftest import as_body, make_user, order_payload, signed_headers

pytestmark = pytest.mark.django_db

MODELS = ("carrier", "carrierservice", "carriercodemapping")


def staff_client(username: str, group: str) -> tuple[Client, User]:
    user = make_user(username, group)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client, user


def admin_urls(model: str) -> dict[str, str]:
    first = (
        {
            "carrier": Carrier,
            "carrierservice": CarrierService,
            "carriercodemapping": CarrierCodeMapping,
        }[model]
        .objects.order_by("pk")
        .first()
    )
    return {
        "changelist": reverse(f"admin:orders_{model}_changelist"),
        "add": reverse(f"admin:orders_{model}_add"),
        "change": reverse(f"admin:orders_{model}_change", args=[first.pk]),
    }


@pytest.mark.parametrize("model", MODELS)
def test_ops_manager_loads_every_carrier_admin_page(carriers, model):
    client, _ = staff_client("olga", "ops_manager")

    for page, url in admin_urls(model).items():
        response = client.get(url)
        assert response.status_code == 200, (page, url)


@pytest.mark.parametrize("model", MODELS)
def test_cs_manager_may_only_view(carriers, model):
    client, _ = staff_client("carl", "cs_manager")
    urls = admin_urls(model)

    assert client.get(urls["changelist"]).status_code == 200
    assert client.get(urls["change"]).status_code == 200
    assert client.get(urls["add"]).status_code == 403


@pytest.mark.parametrize("model", MODELS)
def test_cs_agent_is_forbidden(carriers, model):
    client, _ = staff_client("alice", "cs_agent")

    for page, url in admin_urls(model).items():
        assert client.get(url).status_code == 403, page


def test_mapping_added_in_admin_releases_waiting_orders(channel, catalog, post_webhook):
    for order_id in (1, 2):
        body = as_body(
            order_payload(
                order_id=order_id,
                shipping_lines=[{"code": "Std US D2D Dom", "title": "Standard", "price": "5"}],
            )
        )
        post_webhook(body, headers=signed_headers(body, webhook_id=f"wh-{order_id}"))
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.ON_HOLD}
    client, ops = staff_client("olga", "ops_manager")
    ground = CarrierService.objects.get(carrier__code="usps", code="ground_advantage")

    response = client.post(
        reverse("admin:orders_carriercodemapping_add"),
        {"channel": "", "code": "std-us-d2d-dom", "destination_country": "", "service": ground.pk},
        follow=True,
    )

    assert response.status_code == 200
    assert "This mapping settled 2 review item(s) waiting on the code." in response.content.decode()
    mapping = CarrierCodeMapping.objects.get(code="std-us-d2d-dom")
    assert mapping.channel is None
    assert mapping.normalized_code == "std us d2d dom"
    assert set(Order.objects.values_list("status", flat=True)) == {OrderStatus.READY}
    assert set(Order.objects.values_list("carrier_service", flat=True)) == {ground.pk}
    assert set(ReviewItem.objects.values_list("status", flat=True)) == {ReviewStatus.RESOLVED}
    audit = AuditEntry.objects.get(action="carrier_mapping.created")
    assert audit.actor == ops
    assert audit.reason == "Saved in the admin"


def test_admin_rejects_duplicate_code_in_same_scope(carriers):
    client, _ = staff_client("olga", "ops_manager")
    ground = CarrierService.objects.get(carrier__code="fedex", code="ground")

    response = client.post(
        reverse("admin:orders_carriercodemapping_add"),
        {"channel": "", "code": "ups-ground", "destination_country": "", "service": ground.pk},
    )

    assert response.status_code == 200
    assert (
        "This scope already has the same code: &#x27;UPS Ground&#x27; -&gt; UPS Ground."
        in response.content.decode()
    )
    assert not CarrierCodeMapping.objects.filter(code="ups-ground").exists()


def test_admin_rejects_lower_case_country(carriers):
    client, _ = staff_client("olga", "ops_manager")
    ground = CarrierService.objects.get(carrier__code="fedex", code="ground")

    response = client.post(
        reverse("admin:orders_carriercodemapping_add"),
        {"channel": "", "code": "Ground", "destination_country": "us", "service": ground.pk},
    )

    assert response.status_code == 200
    assert "Use a two-letter ISO 3166-1 country code in capitals" in response.content.decode()
    assert not CarrierCodeMapping.objects.filter(code="Ground").exists()


def test_admin_change_and_delete_are_audited(carriers):
    client, ops = staff_client("olga", "ops_manager")
    mapping = CarrierCodeMapping.objects.get(normalized_code="03")
    fedex = CarrierService.objects.get(carrier__code="fedex", code="ground")

    response = client.post(
        reverse("admin:orders_carriercodemapping_change", args=[mapping.pk]),
        {"channel": "", "code": "03", "destination_country": "", "service": fedex.pk},
    )
    assert response.status_code == 302
    response = client.post(
        reverse("admin:orders_carriercodemapping_delete", args=[mapping.pk]), {"post": "yes"}
    )
    assert response.status_code == 302

    changed = AuditEntry.objects.get(action="carrier_mapping.changed")
    assert changed.actor == ops
    assert changed.before["service"] == "UPS Ground"
    assert changed.after["service"] == "FedEx Ground"
    deleted = AuditEntry.objects.get(action="carrier_mapping.deleted")
    assert deleted.before["code"] == "03"
    assert not CarrierCodeMapping.objects.filter(pk=mapping.pk).exists()
