"""take_screenshots against the live server: viewport-wide PNGs, or an error naming the page.

The command runs in a subprocess, as `make screenshots` runs it, because Playwright's sync
API cannot start a second time in this process while the folder's browser fixture is open.
"""

import os
import shutil
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from catalog.models import Channel, ChannelKind
from guardrails.defaults import default_policies_load
from inventory.models import Location
from monitoring.demo import HistoryStaff, demo_history_load
from monitoring.rollups import kpi_rollups_refresh
from orders.carrier_reference import carrier_reference_load
from orders.demo import demo_catalog_load
from reviews.models import ReviewItem
from tests.browser.conftest import CHROMIUM_DEFAULT, _browser_unavailable
from tests.conftest import ensure_role_groups, make_user

# The live server reads committed data from another thread.
pytestmark = pytest.mark.django_db(transaction=True)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH, HEIGHT, MAX_HEIGHT = 1280, 900, 2400


@pytest.fixture
def chromium() -> str:
    executable = os.environ.get("OMSGUARD_CHROMIUM", CHROMIUM_DEFAULT)
    try:
        import playwright  # noqa: F401
    except ImportError:
        _browser_unavailable("Playwright is not installed (pip install -e '.[dev]').")
    if shutil.which(executable) is None:
        _browser_unavailable(f"Chromium executable not found at {executable!r}.")
    return executable


@pytest.fixture
def small_demo() -> None:
    """Ten days of demo history with its rollups, and one open review item."""
    ensure_role_groups()
    default_policies_load()
    carrier_reference_load()
    demo_catalog_load()
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="demo-shop", webhook_secret="s")
    Location.objects.create(code="WH-MAIN", name="Main warehouse", kind="warehouse")
    staff = HistoryStaff(
        agent=make_user("agent", "cs_agent"),
        manager=make_user("manager", "cs_manager"),
        ops=make_user("ops", "ops_manager"),
    )
    now = datetime.now(tz=UTC)
    result = demo_history_load(staff=staff, now=now, days=10, daily_orders=(10, 20))
    kpi_rollups_refresh(since=result.start, until=result.end, now=now)
    ReviewItem.objects.create(kind="address", reason="The postcode is missing.", source_data={})


def take_screenshots(base_url: str, out: Path, chromium: str, username: str, password: str):
    environment = {**os.environ, "DEBUG": "1", "OMSGUARD_CHROMIUM": chromium}
    # The browser fixture sets this for the test process; manage.py's checks reject it.
    environment.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "take_screenshots",
            f"--base-url={base_url}",
            f"--out={out}",
            f"--username={username}",
            f"--password={password}",
            f"--width={WIDTH}",
            f"--height={HEIGHT}",
            f"--max-height={MAX_HEIGHT}",
            "--wait=10",
        ],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header: the signature, then the IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_screenshots_viewport_wide_pngs(live_server, chromium, small_demo, tmp_path):
    User.objects.create_superuser("shooter", password="shooter-pass-123")

    result = take_screenshots(live_server.url, tmp_path, chromium, "shooter", "shooter-pass-123")

    assert result.returncode == 0, result.stderr[-2000:]
    assert png_size(tmp_path / "queue.png") == (WIDTH, HEIGHT)
    width, height = png_size(tmp_path / "dashboard.png")
    assert width == WIDTH
    assert HEIGHT <= height <= MAX_HEIGHT
    assert "Saved" in result.stdout


def test_screenshots_failure_names_page(live_server, chromium, tmp_path):
    # Logged in, but without the right to see the review queue, so no demo data is needed.
    User.objects.create_user("nobody", password="nobody-pass-123")

    result = take_screenshots(live_server.url, tmp_path, chromium, "nobody", "nobody-pass-123")

    assert result.returncode != 0
    assert f"Screenshot of {live_server.url}/queue/ failed" in result.stderr
    assert not (tmp_path / "queue.png").exists()


def test_screenshots_wrong_password(live_server, chromium, tmp_path):
    User.objects.create_user("someone", password="right-pass-123")

    result = take_screenshots(live_server.url, tmp_path, chromium, "someone", "wrong-pass")

    assert result.returncode != 0
    assert "Logging in as 'someone'" in result.stderr
