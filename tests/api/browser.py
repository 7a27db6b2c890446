"""What the browser tests share: Debian's chromium, login as a member, screenshots, and the
accessibility check (axe-core, as shipped by axe-playwright-python)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page

from api.runtime import Runtime
from tests.api.conftest import LiveServer, token
from tests.conftest import Workplace

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing (apt-get install chromium)"
)


def keep(path: Path, name: str) -> None:
    """Refresh docs/ only when asked, so running the suite leaves the work tree clean."""
    if os.environ.get("BIZSUPPORT_UPDATE_DOCS"):
        shutil.copy(path, DOCS / name)


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def login(
    browser: Browser, server: LiveServer, runtime: Runtime, wp: Workplace, member_id: str
) -> Page:
    """Log in as the suite's identity provider would hand a member a token."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    await page.goto(f"{server.url}/console/login")
    await page.get_by_test_id("login-token").fill(token(runtime, wp.id, member_id))
    await page.get_by_role("button", name="로그인").click()
    return page


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page, one line each."""
    results = await Axe().run(page)
    return [
        f"{page.url} {v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["target"][0] for n in v["nodes"][:3])
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


async def overflows(page: Page) -> int:
    """How many pixels the page is wider than its viewport (0: no sideways scrolling)."""
    width: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width
