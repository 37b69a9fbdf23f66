"""Settings from the environment, the deploy check, roles and the OpenAPI pages."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "SECRET_KEY": "x" * 20 + "-production-like-key-with-enough-entropy-0123456789",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "oms.example.com",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Drop what the test run itself sets, so the child sees a plain production environment.
    dropped = {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    clean = {key: value for key, value in os.environ.items() if key not in dropped}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_secret_key_is_refused_outside_debug():
    env = PRODUCTION_ENV | {"SECRET_KEY": ""}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("manage.py: SECRET_KEY is not set")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        ("cs_agent", ["reviews.decide_reviewitem", "orders.view_order"], ["catalog.change_sku"]),
        (
            "cs_manager",
            ["reviews.decide_reviewitem", "guardrails.view_auditentry"],
            ["catalog.change_channel"],
        ),
        (
            "ops_manager",
            ["catalog.change_channel", "catalog.add_sku"],
            ["reviews.decide_reviewitem"],
        ),
        ("integration", ["orders.view_order"], ["reviews.decide_reviewitem", "catalog.add_sku"]),
    ],
)
def test_role_groups_have_their_permissions(role, allowed, denied):
    granted = {
        f"{app}.{codename}"
        for app, codename in Group.objects.get(name=role).permissions.values_list(
            "content_type__app_label", "codename"
        )
    }

    for permission in allowed:
        assert permission in granted
    for permission in denied:
        assert permission not in granted


@pytest.mark.django_db
def test_openapi_schema_lists_the_api(client):
    response = client.get("/api/schema/", headers={"Accept": "application/vnd.oai.openapi+json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/orders/" in paths
    assert "/api/v1/review-items/{id}/accept/" in paths


@pytest.mark.django_db
def test_api_docs_page_uses_local_assets_only(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.", "unpkg", "jsdelivr"):
        assert cdn not in html, cdn
