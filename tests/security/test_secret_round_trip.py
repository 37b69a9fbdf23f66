"""Webhook secrets round-trip byte-exact through the admin, add_channel and storage.

Each secret goes in through one entry path, is read back from the database, and must then
verify a webhook signed with exactly that secret.
"""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from catalog.models import Channel, ChannelKind
from orders.adapters import shopify
from orders.models import Delivery
from tests import workers
from tests.conftest import as_body, make_user, order_payload

ROOT = Path(__file__).resolve().parents[2]

SECRETS = {
    "markup-and-entities": "amp & lt < gt > semi ; quote \" apostrophe ' &amp;lt;&#x3B;",
    "non-ascii-and-spaces": "  ünïcödé 秘密 🔑 ß  ",
    "form-encoding-traps": "a+b%2B c=d&e?f#g",
}


def staff(username: str, group: str) -> User:
    user = make_user(username, group)
    user.is_staff = True
    user.save()
    return user


def stored_secret(code: str) -> str:
    """The secret as the database returns it, bypassing any model or form code."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM catalog_channel WHERE code = %s", [code])
        return cursor.fetchone()[0]


def webhook_verifies(client, code: str, secret: str) -> bool:
    body = as_body(order_payload(order_id=8_800_001))
    response = client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": code}),
        data=body,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": f"wh-secret-{code}",
            "X-Shopify-Hmac-Sha256": shopify.signature_for(body, secret),
        },
    )
    return response.status_code == 200 and response.json()["status"] == "accepted"


def admin_form(code: str, secret: str) -> dict:
    return {
        "kind": "shopify",
        "code": code,
        "name": "",
        "webhook_secret": secret,
        "is_active": "on",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_admin_add_round_trip(client, secret):
    client.force_login(staff("olga", "ops_manager"))

    response = client.post(reverse("admin:catalog_channel_add"), admin_form("added", secret))

    assert response.status_code == 302
    assert stored_secret("added").encode("utf-8") == secret.encode("utf-8")
    assert webhook_verifies(client, "added", secret)


@pytest.mark.django_db
@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_admin_change_round_trip(client, secret):
    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="changed", webhook_secret="old")
    client.force_login(staff("olga", "ops_manager"))

    response = client.post(
        reverse("admin:catalog_channel_change", args=[channel.pk]), admin_form("changed", secret)
    )
    page = client.get(reverse("admin:catalog_channel_change", args=[channel.pk]))

    assert response.status_code == 302
    assert stored_secret("changed").encode("utf-8") == secret.encode("utf-8")
    assert webhook_verifies(client, "changed", secret)
    assert secret not in page.content.decode()
    assert not webhook_verifies(client, "changed", "old")


@pytest.mark.django_db
@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_command_round_trip(client, secret):
    call_command(
        "add_channel",
        "shopify",
        "commanded",
        "--secret",
        secret,
        stdout=StringIO(),
        stderr=StringIO(),
    )

    assert stored_secret("commanded").encode("utf-8") == secret.encode("utf-8")
    assert webhook_verifies(client, "commanded", secret)


@pytest.mark.django_db
def test_command_rejects_undecodable_secret():
    # Python turns argv bytes that are not UTF-8 into lone surrogates (PEP 383).
    undecodable = b"secret-\xff".decode("utf-8", "surrogateescape")

    with pytest.raises(CommandError) as raised:
        call_command(
            "add_channel", "shopify", "commanded", "--secret", undecodable, stderr=StringIO()
        )

    assert str(raised.value).startswith("--secret is not valid UTF-8 text")
    assert not Channel.objects.filter(code="commanded").exists()


@pytest.mark.django_db(transaction=True)
def test_command_process_round_trip(client):
    """The secret passes through a real process's argv, under the C locale of many servers."""
    if connection.vendor != "postgresql":
        workers.services_unavailable("A manage.py process cannot reach an SQLite test database.")
    secret = SECRETS["non-ascii-and-spaces"] + SECRETS["markup-and-entities"]
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    environment |= {"DEBUG": "1", "LC_ALL": "C", "DATABASE_URL": workers.test_database_url()}

    result = subprocess.run(
        [sys.executable, "manage.py", "add_channel", "shopify", "processed", "--secret", secret],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert stored_secret("processed").encode("utf-8") == secret.encode("utf-8")
    assert webhook_verifies(client, "processed", secret)
    assert Delivery.objects.count() == 1
