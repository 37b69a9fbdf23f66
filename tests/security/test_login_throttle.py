"""Login throttling: 5 failed logins lock one user name from one address for 15 minutes."""

import io
import logging
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from axes.models import AccessAttempt, AccessLog
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.conftest import make_user
from tests.security.test_headers import EXPECTED_POLICY, policy_of

OFFICE = "203.0.113.10"
ELSEWHERE = "198.51.100.7"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
COOL_OFF = timedelta(minutes=15)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every login attempt here hashes a password; Django's default hasher takes a large share
    # of a second per hash, on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(client: Client, username: str, password: str, *, address: str = OFFICE, url=None):
    return client.post(
        url or reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def fail_logins(client: Client, username: str, count: int, *, address: str = OFFICE, url=None):
    return [
        log_in(client, username, "wrong-password", address=address, url=url) for _ in range(count)
    ]


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


@pytest.fixture
def alice(db) -> User:
    return make_user("alice", "cs_agent")


@pytest.fixture
def frozen():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def test_fifth_failure_locks_the_right_password_out(client, alice, frozen):
    failures = fail_logins(client, "alice", 5)
    right = log_in(client, "alice", "pw-alice")

    assert [response.status_code for response in failures] == [200, 200, 200, 200, 429]
    assert right.status_code == 429
    # The lock lasts 900 s, and axes still counts the attempt at exactly 900 s.
    assert right["Retry-After"] == "901"
    assert "_auth_user_id" not in client.session


def test_lockout_page_is_ours(client, alice, frozen):
    fail_logins(client, "alice", 5)
    frozen.shift(timedelta(minutes=4, seconds=30))

    response = log_in(client, "alice", "pw-alice")
    html = " ".join(response.content.decode().split())

    assert response.status_code == 429
    assert "registration/locked_out.html" in [template.name for template in response.templates]
    assert response["Retry-After"] == str(10 * 60 + 30 + 1)
    assert "Login locked for 11 minutes" in html
    assert "There were 5 failed login attempts for <strong>alice</strong>" in html
    assert "blocked for 15 minutes after the last failed attempt" in html
    assert 'Try again after <time datetime="2026-03-02T09:15:00+00:00">09:15 UTC</time>' in html
    assert "ask an ops manager or an administrator" in html
    assert policy_of(response) == EXPECTED_POLICY


def test_four_failures_do_not_lock(client, alice, frozen):
    fail_logins(client, "alice", 4)

    assert logged_in(log_in(client, "alice", "pw-alice"))


def test_other_user_from_same_address_is_not_locked(client, alice, frozen):
    make_user("bob", "cs_agent")
    fail_logins(client, "alice", 5)

    assert logged_in(log_in(client, "bob", "pw-bob"))


def test_same_user_from_other_address_is_not_locked(client, alice, frozen):
    fail_logins(client, "alice", 5, address=ELSEWHERE)

    assert log_in(client, "alice", "pw-alice", address=ELSEWHERE).status_code == 429
    assert logged_in(log_in(client, "alice", "pw-alice", address=OFFICE))


def test_login_works_after_cool_off(client, alice, frozen):
    fail_logins(client, "alice", 5)
    frozen.shift(COOL_OFF - timedelta(seconds=1))
    # Tried during the lockout, this attempt must not start the 15 minutes again.
    still_locked = log_in(client, "alice", "pw-alice")
    frozen.shift(timedelta(seconds=1))
    at_the_end = log_in(client, "alice", "pw-alice")
    frozen.shift(timedelta(seconds=int(at_the_end["Retry-After"])))

    assert still_locked.status_code == 429
    assert still_locked["Retry-After"] == "2"
    assert at_the_end.status_code == 429
    assert at_the_end["Retry-After"] == "1"
    assert logged_in(log_in(client, "alice", "pw-alice"))
    assert not AccessAttempt.objects.filter(username="alice").exists()


def test_success_resets_the_count(client, alice, frozen):
    fail_logins(client, "alice", 4)
    assert logged_in(log_in(client, "alice", "pw-alice"))
    client.logout()

    again = fail_logins(client, "alice", 4)

    assert [response.status_code for response in again] == [200] * 4
    assert logged_in(log_in(client, "alice", "pw-alice"))


def test_admin_login_is_throttled(client, db, frozen):
    User.objects.create_superuser("root", password="root-pass-123")
    admin_login = reverse("admin:login")

    failures = fail_logins(client, "root", 5, url=admin_login)
    right = log_in(client, "root", "root-pass-123", url=admin_login)

    assert [response.status_code for response in failures] == [200, 200, 200, 200, 429]
    assert right.status_code == 429
    assert right["Retry-After"] == "901"
    assert "registration/locked_out.html" in [template.name for template in right.templates]
    assert "_auth_user_id" not in client.session


def test_failures_on_both_login_pages_add_up(client, alice, frozen):
    fail_logins(client, "alice", 3)
    fail_logins(client, "alice", 2, url=reverse("admin:login"))

    assert log_in(client, "alice", "pw-alice").status_code == 429


def test_proxy_count_reads_the_client_address(client, alice, frozen, settings):
    settings.OMSGUARD_RATE_LIMIT_PROXY_COUNT = 1
    proxy = "10.0.0.2"

    for _ in range(5):
        client.post(
            reverse("login"),
            {"username": "alice", "password": "wrong-password"},
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=f"1.2.3.4, {ELSEWHERE}",
        )
    from_office = client.post(
        reverse("login"),
        {"username": "alice", "password": "pw-alice"},
        REMOTE_ADDR=proxy,
        HTTP_X_FORWARDED_FOR=OFFICE,
    )

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {ELSEWHERE}
    assert logged_in(from_office)


def test_logs_name_the_user_but_not_password_or_address(client, alice, frozen, caplog):
    caplog.set_level(logging.INFO)

    fail_logins(client, "alice", 5)
    log_in(client, "alice", "pw-alice")

    text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    lockouts = [record for record in caplog.records if record.getMessage() == "login locked out"]
    assert 'username: "alice"' in text
    assert "wrong-password" not in text
    assert "pw-alice" not in text
    assert OFFICE not in text
    assert len(lockouts) == 2
    assert lockouts[0].username == "alice"
    assert lockouts[0].retry_after_seconds == 901


def test_stored_attempt_masks_password_and_csrf_token(alice, frozen):
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("login"))
    token = client.cookies["csrftoken"].value

    client.post(
        reverse("login"),
        {"username": "alice", "password": "wrong-password", "csrfmiddlewaretoken": token},
        REMOTE_ADDR=OFFICE,
    )
    attempt = AccessAttempt.objects.get(username="alice")

    assert "wrong-password" not in attempt.post_data
    assert token not in attempt.post_data
    assert "username=alice" in attempt.post_data


def test_successful_login_writes_no_access_log(client, alice, frozen):
    assert logged_in(log_in(client, "alice", "pw-alice"))

    assert AccessLog.objects.count() == 0


def test_reset_command_unlocks_the_user(client, alice, frozen):
    fail_logins(client, "alice", 5)

    output = io.StringIO()
    call_command("axes_reset_username", "alice", stdout=output)

    assert output.getvalue().strip() == "1 attempts removed."

    assert logged_in(log_in(client, "alice", "pw-alice"))


def unlocking_user(kind: str) -> User:
    if kind == "superuser":
        return User.objects.create_superuser("root", password="root-pass-123")
    ops = make_user("olga", "ops_manager")
    ops.is_staff = True
    ops.save(update_fields=["is_staff"])
    return ops


@pytest.mark.parametrize("kind", ["superuser", "ops_manager"])
def test_admin_unlock(client, alice, frozen, kind):
    fail_logins(client, "alice", 5)
    attempt = AccessAttempt.objects.get(username="alice")
    admin = Client()
    admin.force_login(unlocking_user(kind))

    listed = admin.get(reverse("admin:axes_accessattempt_changelist"))
    deleted = admin.post(
        reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"}
    )

    assert listed.status_code == 200
    assert "alice" in listed.content.decode()
    assert deleted.status_code == 302
    assert logged_in(log_in(client, "alice", "pw-alice"))


def test_staff_without_axes_permissions_cannot_see_attempts(client, alice, frozen):
    fail_logins(client, "alice", 5)
    staff = make_user("sam", "cs_manager")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    viewer = Client()
    viewer.force_login(staff)

    assert viewer.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403
