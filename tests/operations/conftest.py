"""A gateway started in the test's event loop on a free port, in front of
services the test starts."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from services.gateway.app import build_app
from services.gateway.settings import Settings

StartGateway = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """`await start_gateway(targets, **settings)`: a gateway on a free port; its URL."""
    runners: list[web.AppRunner] = []

    async def start(targets: dict[str, str], **settings: Any) -> str:
        app = build_app(dataclasses.replace(Settings(), targets=targets, **settings))
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()
