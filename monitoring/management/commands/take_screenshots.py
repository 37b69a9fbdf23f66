"""Save PNG screenshots of the review queue, the KPI dashboard, a canary and the weekly review
of a running OMS Guard.

`make screenshots` runs this against a throw-away demo to refresh the README's images. It
drives a Chromium that is already installed (Debian's /usr/bin/chromium by default) through
Playwright and never downloads a browser.
"""

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

from django.core.management.base import BaseCommand, CommandError, CommandParser

CHROMIUM_DEFAULT = "/usr/bin/chromium"
# Chromium does not start as root without --no-sandbox. The other switches stop it from
# contacting Google services, so the only traffic goes to the OMS Guard under test.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Shot:
    file: str
    path: str
    full_page: bool
    # A CSS selector of a link on `path`: the page it leads to is captured instead. When
    # nothing matches, the shot is skipped.
    follow: str = ""


SHOTS = [
    Shot("queue.png", "/queue/", full_page=False),
    Shot("dashboard.png", "/dashboard/", full_page=True),
    # The list shows running and paused canaries first.
    Shot("canary.png", "/rollouts/", full_page=True, follow='a[href^="/rollouts/canaries/"]'),
    # Last week's review: a complete week, where this week's may have nothing labelled yet.
    Shot("weekly-review.png", "/feedback/weekly/", full_page=True, follow='a[rel="prev"]'),
]


class Command(BaseCommand):
    help = (
        "Log in to a running OMS Guard and save docs/screenshots/queue.png (the review queue), "
        "dashboard.png (the KPI dashboard), canary.png (the first canary on /rollouts/) and "
        "weekly-review.png (last week's review) with Playwright and an installed Chromium."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", required=True, help="The running site, e.g. http://127.0.0.1:8765."
        )
        parser.add_argument(
            "--out", default="docs/screenshots", help="Folder for the PNG files (created)."
        )
        parser.add_argument("--username", required=True, help="Who to log in as.")
        parser.add_argument("--password", required=True)
        parser.add_argument("--width", type=int, default=1280, help="Viewport width in pixels.")
        parser.add_argument("--height", type=int, default=900, help="Viewport height in pixels.")
        parser.add_argument(
            "--max-height",
            type=int,
            default=2400,
            help="Full-page screenshots are cut off below this many pixels.",
        )
        parser.add_argument(
            "--chromium",
            default=os.environ.get("OMSGUARD_CHROMIUM", CHROMIUM_DEFAULT),
            help="Chromium executable (default: $OMSGUARD_CHROMIUM, else /usr/bin/chromium).",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=30.0,
            help="Seconds to wait for the site to respond before giving up.",
        )

    def handle(self, *args, **options) -> None:
        sync_playwright = _playwright()
        chromium = options["chromium"]
        if shutil.which(chromium) is None:
            raise CommandError(
                f"Chromium executable not found at {chromium!r}. Install Debian's chromium "
                "(apt-get install chromium) or pass --chromium PATH."
            )
        base_url = options["base_url"].rstrip("/")
        _wait_for_site(base_url, options["wait"])
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                context = browser.new_context(
                    viewport={"width": options["width"], "height": options["height"]}
                )
                context.set_default_timeout(PAGE_TIMEOUT_MS)
                page = context.new_page()
                _log_in(page, base_url, options["username"], options["password"])
                for shot in SHOTS:
                    if shot.follow:
                        followed = _followed(page, base_url, shot)
                        if followed is None:
                            self.stdout.write(
                                f"Skipped {shot.file}: no link matches {shot.follow} on "
                                f"{shot.path}."
                            )
                            continue
                        shot = followed
                    path = _capture(page, base_url, shot, out, options)
                    self.stdout.write(f"Saved {path} ({base_url}{shot.path}).")
            finally:
                browser.close()


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise CommandError(
            "Playwright is not installed; install the dev extras: pip install -e '.[dev]'. "
            "Do not run `playwright install`: this command uses the installed Chromium."
        ) from None
    return sync_playwright


def _wait_for_site(base_url: str, seconds: float) -> None:
    """Poll the health check until the site responds, so a server still starting is fine."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urlopen(f"{base_url}/healthz", timeout=5):  # noqa: S310 - http(s) of our site
                return
        except (URLError, OSError) as error:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{base_url} did not respond within {seconds:.0f} s ({error}). Is the server "
                    "running?"
                ) from error
            time.sleep(0.5)


def _log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form [type=submit]")
    page.wait_for_load_state()
    if "/accounts/login/" in page.url:
        raise CommandError(
            f"Logging in as {username!r} at {base_url}/accounts/login/ failed; check the user "
            "name and password (seed_demo prints the demo logins)."
        )


def _followed(page, base_url: str, shot: Shot) -> Shot | None:
    """Return the shot of the page the first `shot.follow` link on `shot.path` leads to."""
    page.goto(f"{base_url}{shot.path}", wait_until="networkidle")
    link = page.query_selector(shot.follow)
    href = link.get_attribute("href") if link is not None else None
    if not href:
        return None
    # The link may be relative ("?week=2026-W48"); keep the path and query of its target.
    target = urlsplit(urljoin(page.url, href))
    path = target.path + (f"?{target.query}" if target.query else "")
    return Shot(shot.file, path, full_page=shot.full_page)


def _capture(page, base_url: str, shot: Shot, out: Path, options: dict) -> Path:
    """Open the page, check that it loaded, and save its screenshot; return the file path."""
    url = f"{base_url}{shot.path}"
    response = page.goto(url, wait_until="networkidle")
    status = response.status if response is not None else None
    if status != 200 or "/accounts/login/" in page.url:
        raise CommandError(
            f"Screenshot of {url} failed: the response was {status} at {page.url}. The page "
            f"must exist and {options['username']!r} must be allowed to see it."
        )

    path = out / shot.file
    if not shot.full_page:
        page.screenshot(path=str(path))
        return path
    height = page.evaluate("document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": options["width"], "height": min(height, options["max_height"])}
    page.screenshot(path=str(path), full_page=True, clip=clip)
    return path
