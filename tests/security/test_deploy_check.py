"""`manage.py check --deploy` in a production-like environment, the security settings it ends up
with, and the headers and cookies of real responses under those settings."""

import json
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

# The settings read back from the production-like process.
SECURITY_SETTINGS = [
    "DEBUG",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "X_FRAME_OPTIONS",
    "SILENCED_SYSTEM_CHECKS",
]
ONE_YEAR_SECONDS = 365 * 24 * 3600
# Each silenced check with the reason settings.py gives for it.
JUSTIFIED_SILENCES = {"security.W021"}  # HSTS preload: the domain owner's opt-in.


def production_environment() -> dict[str, str]:
    """Only what a production start needs: a long random key and the host name, DEBUG unset."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "oms.example.com",
    }


def run_manage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=production_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def production_settings() -> dict:
    """The security settings as a production process computes them."""
    names = json.dumps(SECURITY_SETTINGS)
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {names}}}))"
    )
    result = run_manage("shell", "--no-imports", "-c", script)

    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_deploy_check_is_clean():
    result = run_manage("check", "--deploy", "--fail-level", "DEBUG")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (1 silenced)."
    assert "WARNING" not in result.stderr
    assert "ERROR" not in result.stderr


def test_only_justified_checks_are_silenced(production_settings):
    assert set(production_settings["SILENCED_SYSTEM_CHECKS"]) == JUSTIFIED_SILENCES


def test_production_security_settings(production_settings):
    values = production_settings

    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= ONE_YEAR_SECONDS
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["SECURE_REFERRER_POLICY"] == "same-origin"
    assert values["X_FRAME_OPTIONS"] == "DENY"


@pytest.fixture
def production_client(settings, production_settings) -> Client:
    """A test client whose responses pass through the production security settings.

    The tests' own conftest turns the HTTPS redirect and secure cookies off; this puts the
    production values back before the client builds its middleware on its first request.
    """
    for name, value in production_settings.items():
        if name not in {"DEBUG", "SILENCED_SYSTEM_CHECKS"}:
            setattr(settings, name, value)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return Client()


@pytest.mark.django_db
def test_plain_http_is_redirected_to_https(production_client):
    response = production_client.get(reverse("login"))

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/"
    assert "Strict-Transport-Security" not in response


@pytest.mark.django_db
def test_https_response_has_hsts_and_secure_cookies(production_client, production_settings):
    User.objects.create_user("alice", password="alice-pass-123")

    page = production_client.get(reverse("login"), secure=True)
    login = production_client.post(
        reverse("login"), {"username": "alice", "password": "alice-pass-123"}, secure=True
    )
    session = login.cookies[settings.SESSION_COOKIE_NAME]
    csrf = page.cookies[settings.CSRF_COOKIE_NAME]

    assert page["Strict-Transport-Security"] == (
        f"max-age={production_settings['SECURE_HSTS_SECONDS']}; includeSubDomains"
    )
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Referrer-Policy"] == "same-origin"
    assert login.status_code == 302
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"
