"""add_channel and add_api_token."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from catalog.models import Channel
from guardrails.models import AuditEntry

pytestmark = pytest.mark.django_db

AWKWARD_SECRETS = [
    "plain-ascii-secret",
    "amp & lt < gt > semi ; quote \" apostrophe '",
    "  leading and trailing spaces  ",
    "ünïcödé 秘密 🔑",
    "shpss_0123456789abcdef0123456789abcdef",
]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.parametrize("secret", AWKWARD_SECRETS)
def test_add_channel_stores_secret_byte_exact(secret):
    output = run("add_channel", "shopify", "my-store", "--secret", secret)

    assert "Created shopify channel 'my-store'." in output
    channel = Channel.objects.get(code="my-store")
    assert channel.webhook_secret.encode("utf-8") == secret.encode("utf-8")


def test_add_channel_updates_secret_and_keeps_it_when_omitted():
    run("add_channel", "shopify", "my-store", "--secret", "first")
    output = run("add_channel", "shopify", "my-store", "--secret", "second")
    run("add_channel", "shopify", "my-store", "--name", "Renamed")

    assert "Updated shopify channel 'my-store'." in output
    channel = Channel.objects.get(code="my-store")
    assert channel.webhook_secret == "second"
    assert channel.name == "Renamed"
    assert Channel.objects.count() == 1


def test_add_channel_audits_without_the_secret():
    run("add_channel", "shopify", "my-store", "--secret", "do-not-log-me")

    entry = AuditEntry.objects.get(action="channel.created")
    assert "do-not-log-me" not in str(entry.after)
    assert entry.after["secret_changed"] is True


def test_add_channel_rejects_unknown_kind():
    with pytest.raises(CommandError):
        call_command("add_channel", "myspace", "x", "--secret", "s", stderr=StringIO())


def test_add_channel_rejects_invalid_code():
    with pytest.raises(CommandError, match="code"):
        run("add_channel", "shopify", "has spaces", "--secret", "s")


def test_add_api_token_prints_same_token_twice():
    User.objects.create_user("robot")

    first = run("add_api_token", "robot").strip()
    second = run("add_api_token", "robot").strip()

    assert first == second == Token.objects.get(user__username="robot").key
    assert len(first) == 40


def test_add_api_token_rotate_replaces_token():
    User.objects.create_user("robot")
    first = run("add_api_token", "robot").strip()

    rotated = run("add_api_token", "robot", "--rotate").strip()

    assert rotated != first
    assert Token.objects.get(user__username="robot").key == rotated


def test_add_api_token_unknown_user_is_an_error():
    with pytest.raises(CommandError, match="User 'ghost' does not exist"):
        run("add_api_token", "ghost")


def test_add_api_token_can_create_integration_user():
    token = run("add_api_token", "connector", "--create-user").strip()

    user = User.objects.get(username="connector")
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["integration"]
    assert Token.objects.get(user=user).key == token


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("shopify", "Webhook URL path: /webhooks/shopify/ch-1/"),
        ("square", "Webhook URL path: /webhooks/square/ch-1/"),
        ("canonical", "POST /api/v1/orders/ from a token granted this channel"),
        ("amazon", "manage.py ingest_file --channel ch-1 FILE"),
    ],
)
def test_add_channel_says_how_orders_arrive(kind, expected):
    errors = StringIO()
    out = StringIO()

    call_command("add_channel", kind, "ch-1", stdout=out, stderr=errors)

    assert expected in out.getvalue()
    if kind in ("canonical", "amazon"):
        assert "/webhooks/" not in out.getvalue()
        assert errors.getvalue() == ""
    else:
        assert "every webhook gets a 401" in errors.getvalue()
