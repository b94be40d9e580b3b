"""Browser fixtures: headless Debian Chromium driven by Playwright, on the integration stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.integration.harness import API_KEY, ApiServer
from tests.patience import patience

CHROMIUM = os.environ.get("AUTOMATIONS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
# The committed screenshots (docs/dashboard.md shows them) change only on purpose:
# `UPDATE_SCREENSHOTS=1 make test`. Otherwise a run writes its own under build/, for a look.
COMMITTED_SCREENSHOTS = ROOT / "docs" / "screenshots"
SCREENSHOTS = (
    COMMITTED_SCREENSHOTS
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else ROOT / "build" / "screenshots"
)
VIEWPORT = {"width": 1366, "height": 800}


def require_chromium() -> None:
    """Skip locally without Chromium or Playwright; in CI (CI=true) fail instead."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is not installed"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if problem is None:
        return
    if IN_CI:
        pytest.fail(problem + " (CI=true: browser tests must not skip)")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    driver.stop()


@dataclass
class Watch:
    """What the page said on its own: console errors and dialogs (an alert means injected code)."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def page(browser: Any, api_server: ApiServer, watch: Watch) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the live API server, at laptop size."""
    context = browser.new_context(viewport=VIEWPORT, base_url=api_server.base_url)
    tab = context.new_page()
    tab.set_default_timeout(patience(15_000))
    tab.on("pageerror", lambda error: watch.errors.append(f"page error: {error}"))

    def console(message: Any) -> None:
        # A 403 or 404 page is a non-2xx document on purpose; anything else is a real error.
        if message.type == "error" and "Failed to load resource" not in message.text:
            watch.errors.append(message.text)

    def dialog(prompt: Any) -> None:
        watch.dialogs.append(prompt.message)
        prompt.dismiss()

    tab.on("console", console)
    tab.on("dialog", dialog)
    yield tab
    context.close()
    assert watch.errors == [], "the dashboard logged errors in the browser"
    assert watch.dialogs == [], "a dialog opened: user data ran as code"


def sign_in(page: Any, key: str = API_KEY) -> None:
    """Use the sign-in form as an operator does."""
    page.goto("/dashboard/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Automations')")


def screenshot(page: Any, name: str) -> None:
    """Keep a PNG of the page: under build/screenshots/, or docs/ with UPDATE_SCREENSHOTS=1."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
