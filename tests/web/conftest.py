"""Browser tests: Debian's chromium (/usr/bin/chromium, installed by `make
install`), driven headless by Playwright for Python, in front of the real
services and gateway started as the other tests start them (real Postgres and
nats-server). Playwright's own browser download is never used."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)

from services.gateway.app import build_app
from services.gateway.settings import Settings
from services.kit.auth import TokenPolicy
from tests.gateway.conftest import start_gateway  # noqa: F401  (the gateway tests' fixture)
from tests.support import Platform

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
# How long an expectation waits for its condition: the machine may be busy.
expect.set_options(timeout=15_000)
ROOT = Path(__file__).resolve().parents[2]
# Where the screenshots go, with the rest of the test output (not committed;
# docs/screenshots/ holds the copies the README shows).
SCREENSHOTS = Path(os.environ.get("COCREATE_WEB_SCREENSHOTS", ROOT / ".test-output" / "web"))


@dataclass
class Stack:
    """The three services and a gateway that mints development tokens."""

    url: str


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run `make install`"  # noqa: ASYNC240
    # Playwright starts the browser on a fresh user-data folder in the temporary
    # folder (removed when it closes); each page gets a context of its own.
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def stack(platform: Platform) -> AsyncIterator[Stack]:
    services = {name: await platform.start(name) for name in ("ideas", "votes", "rewards")}
    defaults = Settings()
    settings = dataclasses.replace(
        defaults,
        targets={name: running.address for name, running in services.items()},
        dev_tokens=TokenPolicy(),
        rate_limit_per_second=0,
    )
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Stack(f"http://{host}:{port}")
    finally:
        await runner.cleanup()


# `await new_page(locale="zh-CN", phone=True)`: a page in a context of its own.
NewPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    contexts: list[BrowserContext] = []
    page_errors: dict[Page, list[str]] = {}

    async def make(*, locale: str = "en-US", phone: bool = False) -> Page:
        size: ViewportSize = (
            {"width": 390, "height": 844} if phone else {"width": 1180, "height": 900}
        )
        context = await browser.new_context(locale=locale, viewport=size)
        contexts.append(context)
        page = await context.new_page()
        # Whatever the page's script throws fails the test.
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.set_default_timeout(20_000)
        page_errors[page] = errors
        return page

    yield make
    for context in contexts:
        await context.close()
    thrown = [e for errors in page_errors.values() for e in errors]
    assert thrown == [], f"the page's script threw: {thrown}"


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"
