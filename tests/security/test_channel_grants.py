"""Granting channels to API users with `add_api_token --channel`, and what a grant opens."""

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from catalog.models import Channel, ChannelKind
from orders.models import ChannelApiGrant

pytestmark = pytest.mark.django_db


def add_api_token(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("add_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip()


@pytest.fixture
def channels(db) -> list[Channel]:
    return [
        Channel.objects.create(kind=ChannelKind.CANONICAL, code="b2b"),
        Channel.objects.create(kind=ChannelKind.AMAZON, code="amazon-us"),
    ]


def granted_codes(username: str) -> list[str]:
    grants = ChannelApiGrant.objects.filter(user__username=username)
    return sorted(grants.values_list("channel__code", flat=True))


def test_new_user_gets_channels(channels):
    add_api_token("connector", "--create-user", "--channel", "b2b", "--channel", "amazon-us")

    assert granted_codes("connector") == ["amazon-us", "b2b"]


def test_second_run_adds_grant_same_token(channels):
    first = add_api_token("connector", "--create-user", "--channel", "b2b")

    second = add_api_token("connector", "--channel", "amazon-us", "--channel", "b2b")

    assert second == first
    assert granted_codes("connector") == ["amazon-us", "b2b"]


def test_unknown_channel_is_an_error(channels):
    with pytest.raises(CommandError, match="Unknown channel code\\(s\\): nope"):
        add_api_token("connector", "--create-user", "--channel", "nope")

    assert not User.objects.filter(username="connector").exists()


def test_granted_token_reads_its_channel_only(channels):
    token = add_api_token("connector", "--create-user", "--channel", "b2b")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    b2b = client.get("/api/v1/orders/", {"channel": "b2b"})
    without_grant = client.post(
        "/api/v1/breakers/report-degradation/",
        {"scope": "channel", "key": "amazon-us", "detail": "503s"},
        format="json",
    )

    assert b2b.status_code == 200
    assert without_grant.status_code == 403
    assert without_grant.json()["error"]["code"] == "channel_not_allowed"
