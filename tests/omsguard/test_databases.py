"""The read replica: which alias reporting reads use, and how settings build it from the env.

Each case runs in a subprocess, because settings read OMSGUARD_REPLICA_DATABASE_URL once at
import. Nothing connects to the URLs, so the databases they name need not exist.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from omsguard.databases import reporting_database

ROOT = Path(__file__).resolve().parents[2]
PRIMARY_URL = "postgres://oms@primary.invalid:5432/omsguard"
REPLICA_URL = "postgres://oms_reader@replica.invalid:5433/omsguard"

SCRIPT = """
import json, django
django.setup()
from django.conf import settings
from omsguard.databases import reporting_database
replica = settings.DATABASES.get("replica")
print(json.dumps({
    "aliases": sorted(settings.DATABASES),
    "reporting": reporting_database(),
    "replica": replica and {
        "host": replica["HOST"],
        "port": replica["PORT"],
        "user": replica["USER"],
        "test": replica["TEST"],
        "conn_max_age": replica["CONN_MAX_AGE"],
    },
}))
"""


def _settings_with(**environment: str) -> dict:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "OMSGUARD_REPLICA_DATABASE_URL", "DB_CONN_MAX_AGE"}
    }
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


def test_no_replica_reads_default():
    loaded = _settings_with(DATABASE_URL=PRIMARY_URL)

    assert loaded["aliases"] == ["default"]
    assert loaded["reporting"] == "default"


def test_replica_url_adds_replica_alias():
    loaded = _settings_with(
        DATABASE_URL=PRIMARY_URL, OMSGUARD_REPLICA_DATABASE_URL=REPLICA_URL, DB_CONN_MAX_AGE="30"
    )

    assert loaded["aliases"] == ["default", "replica"]
    assert loaded["reporting"] == "replica"
    assert loaded["replica"]["host"] == "replica.invalid"
    assert loaded["replica"]["port"] == 5433
    assert loaded["replica"]["user"] == "oms_reader"
    assert loaded["replica"]["conn_max_age"] == 30


def test_replica_mirrors_default_in_tests():
    # Tests create only the primary's test database and read it through the replica alias.
    loaded = _settings_with(DATABASE_URL=PRIMARY_URL, OMSGUARD_REPLICA_DATABASE_URL=REPLICA_URL)

    assert loaded["replica"]["test"]["MIRROR"] == "default"


def test_replica_ignored_on_sqlite():
    # Without DATABASE_URL the primary is a SQLite file; a PostgreSQL replica of it cannot exist.
    loaded = _settings_with(OMSGUARD_REPLICA_DATABASE_URL=REPLICA_URL)

    assert loaded["aliases"] == ["default"]
    assert loaded["reporting"] == "default"


@pytest.mark.parametrize(
    ("aliases", "expected"),
    [(("default",), "default"), (("default", "replica"), "replica")],
)
def test_reporting_database_follows_settings(aliases, expected):
    engine = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    databases = {alias: engine for alias in aliases}

    # override_settings warns that DATABASES is read at startup; only the alias list matters here.
    with (
        pytest.warns(UserWarning, match="DATABASES"),
        override_settings(DATABASES=databases),
    ):
        assert reporting_database() == expected
