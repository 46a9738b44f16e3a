"""A headless Chromium for the browser tests: Debian's ``chromium`` driven by Selenium through its
packaged ``chromedriver`` (nothing downloads a browser or a driver), plus the two things every step
needs: waiting for a condition in the page, and a screenshot to look at when it fails."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# Headless Chromium that starts as root in a container and phones nowhere.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000"]


def missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM or not DRIVER:
        return "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pinned in requirements.txt)"
    return None


@contextmanager
def chromium(work: Path, extra: list[str] | None = None) -> Iterator:
    """A Selenium driver of a fresh Chromium profile under ``work`` (``extra``: more command-line
    flags); quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={work / 'chromium'}", *(extra or [])]:
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver, screens: Path, name: str) -> None:
    screens.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screens / f"{name}.png"))


def wait_for(driver, screens: Path, script: str, what: str, timeout: float = 120.0):
    """Poll ``script`` (JavaScript returning a truthy value when done) in the page; a screenshot on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    shot(driver, screens, f"timeout-{what.replace(' ', '-')}")
    raise AssertionError(f"{what}: not within {timeout:.0f} s")
