"""The channel admin: secrets stay hidden from viewers, kept when left blank, and audited."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from catalog.models import Channel, ChannelKind
from guardrails.models import AuditEntry
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SECRET = "very-secret-signing-key"


@pytest.fixture
def shop() -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", webhook_secret=SECRET)


def staff(username: str, group: str) -> User:
    user = make_user(username, group)
    user.is_staff = True
    user.save()
    return user


def test_manager_sees_channel_without_its_secret(client, shop):
    client.force_login(staff("carol", "cs_manager"))

    response = client.get(reverse("admin:catalog_channel_change", args=[shop.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert SECRET not in html
    assert "set (hidden)" in html


def test_ops_edit_keeps_blank_secret_and_is_audited(client, shop):
    client.force_login(staff("olga", "ops_manager"))

    response = client.post(
        reverse("admin:catalog_channel_change", args=[shop.pk]),
        {
            "kind": "shopify",
            "code": "shop",
            "name": "Renamed",
            "webhook_secret": "",
            "is_active": "on",
        },
    )

    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.name == "Renamed"
    assert shop.webhook_secret == SECRET
    entry = AuditEntry.objects.get(action="channel.updated")
    assert entry.actor.username == "olga"
    assert "name" in entry.after["changed_fields"]
    assert SECRET not in str(entry.after)


def test_ops_can_set_secret_with_spaces(client, shop):
    client.force_login(staff("olga", "ops_manager"))

    client.post(
        reverse("admin:catalog_channel_change", args=[shop.pk]),
        {
            "kind": "shopify",
            "code": "shop",
            "name": "",
            "webhook_secret": "  new & <secret> ",
            "is_active": "on",
        },
    )

    shop.refresh_from_db()
    assert shop.webhook_secret == "  new & <secret> "


def test_mapping_delete_in_admin_is_audited(client, shop):
    from catalog.models import ChannelSkuMapping, ExternalIdKind, Sku

    sku = Sku.objects.create(code="MUG-1", title="Mug", price="5.00", currency="USD")
    mapping = ChannelSkuMapping.objects.create(
        channel=shop, id_kind=ExternalIdKind.SKU, external_id="OLD-MUG", sku=sku
    )
    client.force_login(staff("olga", "ops_manager"))

    response = client.post(
        reverse("admin:catalog_channelskumapping_delete", args=[mapping.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not ChannelSkuMapping.objects.exists()
    entry = AuditEntry.objects.get(action="channelskumapping.deleted")
    assert entry.actor.username == "olga"
    assert entry.target_id == str(mapping.pk)
