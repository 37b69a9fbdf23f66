"""Fixtures for the real-browser tests: one headless Chromium for this folder, a page per test.

Playwright's sync API drives Debian's Chromium (or the executable in OMSGUARD_CHROMIUM), not a
browser build downloaded by Playwright. Without Chromium or Playwright the tests
skip, unless OMSGUARD_REQUIRE_BROWSER=1, as in CI, where they fail instead.
"""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # The dev extras are not installed.
    sync_playwright = None

BROWSER_TESTS_DIR = Path(__file__).resolve().parent
CHROMIUM_DEFAULT = "/usr/bin/chromium"
# Chromium does not start as root without --no-sandbox. The other switches stop it from
# contacting Google services, so the tests send traffic only to the live server.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TIMEOUT_MS = 10_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook receives the items of the whole session, so mark only those in this folder.
    for item in items:
        if item.path.is_relative_to(BROWSER_TESTS_DIR):
            item.add_marker(pytest.mark.browser)


def _browser_unavailable(reason: str) -> None:
    """Skip the test, or fail it when OMSGUARD_REQUIRE_BROWSER=1 makes browser tests mandatory."""
    if os.environ.get("OMSGUARD_REQUIRE_BROWSER") == "1":
        pytest.fail(
            f"{reason} OMSGUARD_REQUIRE_BROWSER=1 makes the browser tests mandatory: install "
            "Chromium (apt-get install chromium) and the dev extras (pip install -e '.[dev]'), "
            "or set OMSGUARD_CHROMIUM to the path of a Chromium executable.",
            pytrace=False,
        )
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator["Browser"]:
    """One Chromium for all tests in this folder, closed before the rest of the suite runs.

    Playwright's sync API keeps an asyncio event loop running in the test thread while it is
    open, so Django raises SynchronousOnlyOperation for the tests' own ORM calls (arranging
    data, checking outcomes), although these run synchronously between browser steps.
    DJANGO_ALLOW_ASYNC_UNSAFE turns that check off, and Django reads it on every call. The
    package scope keeps both the loop and the variable away from other tests: subprocesses
    would inherit the variable, and `manage.py check --deploy` rejects it (async.E001).
    """
    executable = os.environ.get("OMSGUARD_CHROMIUM", CHROMIUM_DEFAULT)
    if sync_playwright is None:
        _browser_unavailable("Playwright is not installed (pip install -e '.[dev]').")
    if shutil.which(executable) is None:
        _browser_unavailable(f"Chromium executable not found at {executable!r}.")

    with pytest.MonkeyPatch.context() as environment, sync_playwright() as playwright:
        environment.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def _live_server_plain_http() -> Iterator[None]:
    # SecurityMiddleware reads SECURE_SSL_REDIRECT once, when the live server thread builds
    # its middleware chain, so the per-test override in tests/conftest.py comes too late.
    # The live server speaks plain HTTP only, and a redirect to https would fail every page.
    with override_settings(SECURE_SSL_REDIRECT=False):
        yield


@pytest.fixture(scope="package")
def live_server(_live_server_plain_http, live_server):
    """pytest-django's live server, started with the HTTPS redirect off.

    The server itself is session-scoped. NOTE: a test outside this folder that requested
    live_server earlier in the session would have started it with the redirect on.
    """
    return live_server


@pytest.fixture
def page(browser: "Browser") -> Iterator["Page"]:
    """A page in its own browser context, so cookies and storage never leak between tests."""
    context = browser.new_context()
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()
