"""Debian's Chromium driven by Playwright (which downloads no browser of its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# As root, without a GPU, on a machine whose network ends at loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium() -> Iterator[Any]:
    assert CHROMIUM.exists(), "Debian's chromium is not installed (make test installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def until(page: Any, js: str, timeout_s: float = 60) -> Any:
    """The value of `js` once truthy; fails on a fatal player error (window.reel.errors)."""
    deadline = time.monotonic() + timeout_s
    while not (value := page.evaluate(js)):
        errors = page.evaluate("window.reel ? reel.errors.filter(e => e.fatal) : []")
        assert not errors, errors
        assert time.monotonic() < deadline, f"never true: {js}"
        time.sleep(0.1)
    return value
