"""Settings a multi-machine deployment relies on (docs/deploy.md): the health check over
plain HTTP, a broker other than the cache's Redis, and PgBouncer's transaction mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "broker": settings.CELERY_BROKER_URL,
    "cursors_off": {
        alias: database.get("DISABLE_SERVER_SIDE_CURSORS", False)
        for alias, database in settings.DATABASES.items()
    },
}))
"""
OWN_VARIABLES = {
    "DATABASE_URL",
    "REDIS_URL",
    "OMSGUARD_BROKER_URL",
    "OMSGUARD_REPLICA_DATABASE_URL",
    "DB_DISABLE_SERVER_SIDE_CURSORS",
}


def _settings_with(**environment: str) -> dict:
    # Settings read these once at import, so each case loads them in a fresh process. Nothing
    # connects to the URLs.
    clean = {key: value for key, value in os.environ.items() if key not in OWN_VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=clean | {"DJANGO_SETTINGS_MODULE": "omsguard.settings", "DEBUG": "1"} | environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_healthz_exempt_from_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    health = client.get("/healthz")
    page = client.get("/queue/")

    assert health.status_code == 200
    assert page.status_code == 301
    assert page["Location"].startswith("https://")


def test_broker_defaults_to_redis_url():
    loaded = _settings_with(REDIS_URL="redis://cache.invalid:6379/0")

    assert loaded["broker"] == "redis://cache.invalid:6379/0"


def test_broker_url_sets_rabbitmq_beside_the_redis_cache():
    loaded = _settings_with(
        REDIS_URL="redis://cache.invalid:6379/0",
        OMSGUARD_BROKER_URL="amqp://guest:guest@broker.invalid:5672/omsguard",
    )

    assert loaded["broker"] == "amqp://guest:guest@broker.invalid:5672/omsguard"


def test_server_side_cursors_stay_on_unless_switched_off():
    primary = "postgres://oms@primary.invalid:5432/omsguard"

    default = _settings_with(DATABASE_URL=primary)
    switched_off = _settings_with(
        DATABASE_URL=primary,
        OMSGUARD_REPLICA_DATABASE_URL="postgres://reader@replica.invalid:5432/omsguard",
        DB_DISABLE_SERVER_SIDE_CURSORS="1",
    )

    assert default["cursors_off"] == {"default": False}
    assert switched_off["cursors_off"] == {"default": True, "replica": True}
