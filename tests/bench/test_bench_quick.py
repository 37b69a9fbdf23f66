"""`make bench` in its quick size: every part runs to the end and writes its figures.

The numbers are never asserted, because a loaded CI machine makes them meaningless. The tests
check that the benchmark still works. Each part finishes, each figure has its baseline and
target where the table promises one, and the correctness counts (failed requests, lost
orders) are zero. It needs PostgreSQL and Redis, like the bench itself.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection

from tests.workers import require_services

REPO_ROOT = Path(__file__).resolve().parents[2]
PARTS = ("ingest", "decisions", "queue_page", "dashboard", "import_skus")
# Each part in quick mode takes well under a minute; this only stops a hung run.
RUN_TIMEOUT = 900
# A Redis database of its own, so the bench's queues never meet the test workers' ones.
BENCH_REDIS_DB = 11

pytestmark = [pytest.mark.bench]


def _server_url() -> str:
    """The PostgreSQL server of the test database, without a database name."""
    database = connection.settings_dict
    host = database["HOST"] or "127.0.0.1"
    port = f":{database['PORT']}" if database["PORT"] else ""
    user = database["USER"] or "postgres"
    return f"postgres://{user}@{host}{port}"


def _bench_redis_url() -> str:
    parts = urlsplit(settings.REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{BENCH_REDIS_DB}"))


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        require_services()
        server_url = _server_url()
    output = tmp_path_factory.mktemp("bench") / "results.json"
    environment = os.environ | {
        "BENCH_POSTGRES_URL": server_url,
        "BENCH_REDIS_URL": _bench_redis_url(),
    }
    completed = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--json", str(output)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-6000:]
    return json.loads(output.read_text())


def test_every_part_ran_and_wrote_figures(quick_results):
    assert quick_results["quick"] is True
    assert quick_results["failed_parts"] == []
    parts = {figure["part"] for figure in quick_results["figures"]}
    assert parts == set(PARTS)


def test_figures_are_finite_and_compared_with_their_baselines(quick_results):
    for figure in quick_results["figures"]:
        assert math.isfinite(figure["value"]), figure
        assert figure["value"] >= 0, figure
        if figure["baseline_value"] is not None:
            assert figure["baseline_name"], figure
            assert figure["ratio"] == pytest.approx(figure["value"] / figure["baseline_value"])


def test_every_target_of_the_issue_is_checked(quick_results):
    targets = [figure for figure in quick_results["figures"] if figure["target"]]
    for figure in targets:
        assert figure["passed"] in (True, False), figure
    named = " | ".join(f"{figure['part']}: {figure['name']}" for figure in targets).lower()
    for expected in ("webhook", "end to end", "decision", "queue", "item", "dashboard", "import"):
        assert expected in named, f"no target checked for {expected!r}: {named}"
    assert sum("rss" in figure["name"].lower() for figure in targets) >= 2


def test_correctness_counts_are_zero(quick_results):
    # Figures with an "= n" target count failures or lost orders: those are not speed.
    counts = [figure for figure in quick_results["figures"] if figure["target"].startswith("=")]
    assert counts, "the bench reports no failure counts"
    for figure in counts:
        assert figure["passed"], figure


def test_results_name_the_machine_and_commit(quick_results):
    assert quick_results["machine"]["cpus"] >= 1
    assert quick_results["commit"]
