"""A real headless Chromium for the browser tests: Debian's package driven by Playwright.

:func:`browser` is a session fixture: :func:`tests.services.install.ensure_chromium`
installs ``/usr/bin/chromium`` when it is missing, and Playwright launches that
binary (never a browser of its own download). Tests ask for ``browser``; it is
registered once, in ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.services.install import ensure_chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A launched headless Chromium (a ``playwright.sync_api.Browser``), closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()
