"""SingleQueryModelBackend returns the permissions ModelBackend returns, with one query."""

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, RequestFactory
from django.urls import reverse

from omsguard.auth_backends import SingleQueryModelBackend

pytestmark = pytest.mark.django_db

OWN = "guardrails.label_decision"
FROM_GROUP = "guardrails.propose_decision"
NEITHER = "guardrails.revert_decision"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _user(username: str, **fields) -> User:
    """A user with OWN as their own permission and FROM_GROUP through two groups."""
    user = User.objects.create_user(username=username, password="pw-1234567", **fields)
    user.user_permissions.add(_permission(OWN))
    for name in ("agents-a", "agents-b"):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(_permission(FROM_GROUP))
        user.groups.add(group)
    return user


def _fresh(user: User) -> User:
    # Read again, as each request does, so that no permission cache is set.
    return User.objects.get(pk=user.pk)


USERS = {
    "active": {},
    "inactive": {"is_active": False},
    "superuser": {"is_superuser": True},
    "inactive superuser": {"is_superuser": True, "is_active": False},
    "staff": {"is_staff": True},
}


@pytest.mark.parametrize("kind", USERS)
def test_permissions_match_model_backend(kind):
    user = _user(f"user-{kind}", **USERS[kind])
    ours, django = SingleQueryModelBackend(), ModelBackend()

    assert ours.get_user_permissions(_fresh(user)) == django.get_user_permissions(_fresh(user))
    assert ours.get_group_permissions(_fresh(user)) == django.get_group_permissions(_fresh(user))
    assert ours.get_all_permissions(_fresh(user)) == django.get_all_permissions(_fresh(user))
    for name in (OWN, FROM_GROUP, NEITHER):
        assert ours.has_perm(_fresh(user), name) == django.has_perm(_fresh(user), name), name
    assert ours.has_module_perms(_fresh(user), "guardrails") == django.has_module_perms(
        _fresh(user), "guardrails"
    )


def test_user_without_groups_matches():
    user = User.objects.create_user(username="lonely")
    user.user_permissions.add(_permission(OWN))

    assert SingleQueryModelBackend().get_all_permissions(_fresh(user)) == {OWN}


def test_object_and_anonymous_get_none():
    from django.contrib.auth.models import AnonymousUser

    user = _user("with-object")
    backend = SingleQueryModelBackend()

    assert backend.get_all_permissions(_fresh(user), obj=user) == set()
    assert backend.get_user_permissions(AnonymousUser()) == set()


def test_first_check_reads_once(django_assert_num_queries):
    user = _fresh(_user("counted"))
    backend = SingleQueryModelBackend()

    with django_assert_num_queries(1):
        assert backend.has_perm(user, OWN)
        assert backend.has_perm(user, FROM_GROUP)
        assert not backend.has_perm(user, NEITHER)
        assert backend.get_user_permissions(user) == {OWN}
        assert backend.get_group_permissions(user) == {FROM_GROUP}


def test_superuser_reads_once(django_assert_num_queries):
    user = _fresh(_user("root", is_superuser=True))

    with django_assert_num_queries(1):
        permissions = SingleQueryModelBackend().get_all_permissions(user)

    assert permissions == {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list(
            "content_type__app_label", "codename"
        )
    }


def test_cache_lasts_per_user_object():
    user = _fresh(_user("cached"))
    backend = SingleQueryModelBackend()
    assert not backend.has_perm(user, NEITHER)

    user.user_permissions.add(_permission(NEITHER))

    assert not backend.has_perm(user, NEITHER)
    assert backend.has_perm(_fresh(user), NEITHER)


def test_cleared_cache_read_again():
    """Code that deletes ModelBackend's cache attributes gets fresh sets, as with ModelBackend."""
    user = _fresh(_user("cleared"))
    backend = SingleQueryModelBackend()
    assert backend.get_group_permissions(user) == {FROM_GROUP}
    Group.objects.get(name="agents-a").permissions.add(_permission(NEITHER))

    for name in ("_user_perm_cache", "_group_perm_cache"):
        delattr(user, name)

    assert backend.get_group_permissions(user) == {FROM_GROUP, NEITHER}


def test_model_backend_after_it_reads_nothing(django_assert_num_queries):
    """ModelBackend listed later finds the caches set under its own names."""
    user = _fresh(_user("shared-cache"))
    SingleQueryModelBackend().get_all_permissions(user)

    with django_assert_num_queries(0):
        assert ModelBackend().get_all_permissions(user) == {OWN, FROM_GROUP}


def test_async_permissions_match():
    user = _user("async-user")
    backend = SingleQueryModelBackend()

    async def read(fresh: User) -> tuple[set[str], set[str], bool]:
        own = await backend.aget_user_permissions(fresh)
        groups = await backend.aget_group_permissions(fresh)
        allowed = await backend.ahas_perm(fresh, FROM_GROUP)
        return own, groups, allowed

    # async_to_sync runs the ORM calls on this thread, in the test's transaction.
    own, groups, allowed = async_to_sync(read)(_fresh(user))

    assert own == {OWN}
    assert groups == {FROM_GROUP}
    assert allowed


def test_settings_keep_axes_first():
    assert settings.AUTHENTICATION_BACKENDS == [
        "axes.backends.AxesStandaloneBackend",
        "omsguard.auth_backends.SingleQueryModelBackend",
    ]


def test_login_checks_password():
    user = _user("login-user")
    request = RequestFactory().post(reverse("login"), REMOTE_ADDR="203.0.113.21")

    assert authenticate(request, username="login-user", password="pw-1234567") == user
    assert authenticate(request, username="login-user", password="wrong") is None


def test_login_page_signs_in(client: Client):
    _user("page-user")

    response = client.post(
        reverse("login"),
        {"username": "page-user", "password": "pw-1234567"},
        REMOTE_ADDR="203.0.113.20",
    )

    assert response.status_code == 302
    assert client.session["_auth_user_backend"] == "omsguard.auth_backends.SingleQueryModelBackend"
