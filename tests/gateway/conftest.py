"""A gateway started in the test's event loop on a free port, in front of
services the test starts with the `platform` fixture."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.gateway.app import build_app
from services.gateway.settings import Settings
from services.kit import auth, config


def bearer(member_id: str = "a1", role: str = "admin") -> dict[str, str]:
    return {"Authorization": "Bearer " + auth.mint_token(member_id, role, config.DEV_JWT_SECRET)}


@dataclass
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class GatewayClient:
    url: str
    session: aiohttp.ClientSession
    headers: dict[str, str]

    async def post(
        self,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        path: str = "/rpc",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        body = raw if raw is not None else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        async with self.session.post(self.url + path, data=body, headers=sent) as response:
            return Answer(response.status, await response.read(), dict(response.headers))

    async def call(self, method: str, params: Any = None, **kwargs: Any) -> Any:
        """One call with id 1; the JSON-RPC response object."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
        if params is not None:
            request["params"] = params
        answer = await self.post(request, **kwargs)
        assert answer.status == 200, answer.body
        return answer.json

    async def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> Answer:
        async with self.session.request(method, self.url + path, headers=headers) as response:
            return Answer(response.status, await response.read(), dict(response.headers))


StartGateway = Callable[..., Awaitable[GatewayClient]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    """`await start_gateway(targets={...}, headers={...}, max_batch=3, ...)`."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        targets: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **settings: Any,
    ) -> GatewayClient:
        defaults = Settings()
        merged = {**defaults.targets, **(targets or {})}
        app = build_app(dataclasses.replace(defaults, targets=merged, **settings))
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return GatewayClient(f"http://{host}:{port}", session, dict(headers or {}))

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()
