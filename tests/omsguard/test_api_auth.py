"""TokenPermissionsAuthentication returns what DRF's TokenAuthentication returns, in one query."""

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from omsguard.api_auth import TokenPermissionsAuthentication

pytestmark = pytest.mark.django_db

OWN = "guardrails.label_decision"
FROM_GROUP = "guardrails.propose_decision"
NEITHER = "guardrails.revert_decision"
USERS = {
    "active": {},
    "superuser": {"is_superuser": True},
    "staff": {"is_staff": True},
}


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _user(username: str, **fields) -> User:
    """A user with OWN as their own permission and FROM_GROUP through two groups."""
    user = User.objects.create_user(username=username, **fields)
    user.user_permissions.add(_permission(OWN))
    for name in ("agents-a", "agents-b"):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(_permission(FROM_GROUP))
        user.groups.add(group)
    return user


def _field_values(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname) for field in type(instance)._meta.fields
    }


@pytest.mark.parametrize("kind", USERS)
def test_token_user_matches_drf(kind):
    key = Token.objects.create(user=_user(f"user-{kind}", **USERS[kind])).key

    user, token = TokenPermissionsAuthentication().authenticate_credentials(key)
    drf_user, drf_token = TokenAuthentication().authenticate_credentials(key)

    assert _field_values(user) == _field_values(drf_user)
    assert _field_values(token) == _field_values(drf_token)
    assert token.user is user
    assert user._state.adding is False
    assert user._state.db == drf_user._state.db


@pytest.mark.parametrize("kind", USERS)
def test_permissions_match_model_backend(kind):
    key = Token.objects.create(user=_user(f"user-{kind}", **USERS[kind])).key
    user, _ = TokenPermissionsAuthentication().authenticate_credentials(key)
    drf_user, _ = TokenAuthentication().authenticate_credentials(key)
    django = ModelBackend()

    assert user.get_user_permissions() == django.get_user_permissions(drf_user)
    assert user.get_group_permissions() == django.get_group_permissions(drf_user)
    assert user.get_all_permissions() == django.get_all_permissions(drf_user)
    assert user.has_perm(OWN)
    assert user.has_perm(FROM_GROUP)
    assert user.has_perm(NEITHER) == (kind == "superuser")


def test_token_and_permissions_one_query():
    key = Token.objects.create(user=_user("one-query")).key

    with CaptureQueriesContext(connection) as queries:
        user, _ = TokenPermissionsAuthentication().authenticate_credentials(key)
        assert user.has_perm(FROM_GROUP)
        assert not user.has_perm(NEITHER)

    # Other databases run DRF's token query, then the backend's permission query.
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)


def test_unknown_token_rejected():
    with pytest.raises(exceptions.AuthenticationFailed) as raised:
        TokenPermissionsAuthentication().authenticate_credentials("0" * 40)

    assert str(raised.value.detail) == "Invalid token."


def test_inactive_user_rejected():
    key = Token.objects.create(user=_user("gone", is_active=False)).key

    with pytest.raises(exceptions.AuthenticationFailed) as raised:
        TokenPermissionsAuthentication().authenticate_credentials(key)

    assert str(raised.value.detail) == "User inactive or deleted."


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Token " + "0" * 40, "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
    ],
)
def test_bad_token_gets_drf_401(header, detail):
    response = APIClient().get("/api/v1/decisions/", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json()["error"]["message"] == detail
    assert response["WWW-Authenticate"] == "Token"


def test_api_uses_token_permissions_class():
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_AUTHENTICATION_CLASSES[0] is TokenPermissionsAuthentication
