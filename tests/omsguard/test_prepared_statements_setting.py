"""DB_PREPARED_STATEMENTS and the breaker check settings, as settings read them.

Each case runs in a subprocess, because settings read the environment once at import. Nothing
connects to the URLs, so the databases they name need not exist.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRIMARY_URL = "postgres://oms@primary.invalid:5432/omsguard"
REPLICA_URL = "postgres://oms_reader@replica.invalid:5433/omsguard"
READ_VARIABLES = {
    "DATABASE_URL",
    "OMSGUARD_REPLICA_DATABASE_URL",
    "DB_PREPARED_STATEMENTS",
    "OMSGUARD_BREAKER_CHECK_DELAY_SECONDS",
    "OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS",
}

SCRIPT = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({
    "options": {alias: value.get("OPTIONS", {}) for alias, value in settings.DATABASES.items()},
    "breaker_delay": settings.OMSGUARD_BREAKER_CHECK_DELAY_SECONDS,
    "baseline_cache": settings.OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS,
}, default=str))
"""


def _run(**environment: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in READ_VARIABLES}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=clean | {"DJANGO_SETTINGS_MODULE": "omsguard.settings", "DEBUG": "1"} | environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings_with(**environment: str) -> dict:
    result = _run(**environment)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_postgres_prepares_by_default():
    loaded = _settings_with(DATABASE_URL=PRIMARY_URL, OMSGUARD_REPLICA_DATABASE_URL=REPLICA_URL)

    for alias in ("default", "replica"):
        assert loaded["options"][alias]["server_side_binding"] is True
        assert loaded["options"][alias]["prepare_threshold"] == 5


def test_prepared_statements_off():
    loaded = _settings_with(
        DATABASE_URL=PRIMARY_URL,
        OMSGUARD_REPLICA_DATABASE_URL=REPLICA_URL,
        DB_PREPARED_STATEMENTS="0",
    )

    for alias in ("default", "replica"):
        assert "server_side_binding" not in loaded["options"][alias]
        assert "prepare_threshold" not in loaded["options"][alias]


def test_sqlite_gets_no_binding_options():
    loaded = _settings_with()

    assert "server_side_binding" not in loaded["options"]["default"]


def test_breaker_delay_default_and_override():
    assert _settings_with()["breaker_delay"] == 1
    assert _settings_with(OMSGUARD_BREAKER_CHECK_DELAY_SECONDS="0")["breaker_delay"] == 0


def test_breaker_delay_out_of_range_rejected():
    result = _run(OMSGUARD_BREAKER_CHECK_DELAY_SECONDS="31")

    assert result.returncode != 0
    assert "OMSGUARD_BREAKER_CHECK_DELAY_SECONDS must be from 0 to 30, got 31." in result.stderr


def test_baseline_cache_default_and_range():
    assert _settings_with()["baseline_cache"] == 300
    result = _run(OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS="3601")

    assert result.returncode != 0
    assert "OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS must be from 0 to 3600" in result.stderr
