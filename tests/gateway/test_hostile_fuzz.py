"""Hostile HTTP against the gateway, seeded and bounded: whatever arrives, the
answer is well-formed JSON-RPC (or a bare 204/4xx), never HTTP 500, never
-32603, never a class name or traceback, and the gateway stays healthy."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import aiohttp
import grpc
import pytest

from services.gateway.methods import Registry
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.hardening import fuzz
from tests.support import Platform

SEED = 20261202
CASES = 400
ALLOWED_STATUSES = {200, 204, 400, 408, 413, 429}

VALUES: list[Any] = [
    None, True, 0, -1, 2**63, -(2**63), 10**30, 1.5, "", "x" * 10_000, "\u0000", "\u202e",
    "💥", [], {}, [[[]]], {"a": {"b": {}}}, "00000000-0000-0000-0000-000000000000",
]  # fmt: skip
RAW_BODIES = [
    b"", b"{", b"[", b"]", b"null", b"1", b'"x"', b"\xff\xfe", b"{}" * 1000,
    b'{"jsonrpc":"2.0","method":"x","id":1e400}', b'{"jsonrpc":"2.0","method":"\\ud800","id":1}',
    b'{"jsonrpc":"2.0","method":"x","id":"\\udc00"}', b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"jsonrpc":"2.0","method":"x","id":NaN}',
    b'{"jsonrpc":"2.0","method":"x","id":-Infinity}', b'{"jsonrpc":"2.0","id":1,"id":2}',
    b"\xef\xbb\xbf{}", b'{"jsonrpc":"2.0","method":"x","params":"\\u0000"}',
]  # fmt: skip
HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer " + "x" * 6000},
    {"Authorization": "Basic Zm9vOmJhcg=="},
    {"X-Cocreate-Service": "nope"},
    {"Content-Type": "text/plain"},
    {"Authorization": bearer("m-1", "member")["Authorization"]},
    {"Authorization": bearer("a-1", "admin")["Authorization"]},
]


def hostile_body(rng: random.Random, methods: list[str]) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice(RAW_BODIES)
    if kind == 1:
        return rng.randbytes(rng.choice([1, 16, 512]))

    def call() -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": rng.choice(["2.0", "2.0", "1.0", 2])}
        request["method"] = rng.choice([*methods, *VALUES[:6], "a.b.C.D", "/x/y"])
        if rng.random() < 0.8:
            request["id"] = rng.choice(VALUES)
        if rng.random() < 0.8:
            request["params"] = rng.choice(
                [{}, [], {"pageSize": rng.choice(VALUES)}, {"ideaId": rng.choice(VALUES)},
                 {"unknownField": 1}, {"filter": {"query": rng.choice(VALUES)}},
                 {"createdAfter": rng.choice(["9999-99-99T00:00:00Z", "0001-01-01T00:00:00Z", 5])},
                 {"weights": {rng.choice(["", "\u0000", "core"]): rng.choice(VALUES)}}]
            )  # fmt: skip
        return request

    if kind == 2:
        return json.dumps([call() for _ in range(rng.choice([1, 3, 20]))]).encode()
    text = json.dumps(call())
    if kind == 3 and len(text) > 4:
        cut = rng.randrange(1, len(text))
        return text[:cut].encode()
    return text.encode()


def problems_in(path: str, status: int, body: bytes) -> list[str]:
    if status not in ALLOWED_STATUSES:
        return [f"HTTP {status}: {body[:200]!r}"]
    if status == 204:
        return []
    try:
        lines = (
            [json.loads(line) for line in body.splitlines() if line.strip()]
            if path == "/rpc/stream"
            else [json.loads(body)]
        )
    except ValueError:
        return [f"HTTP {status}, not JSON: {body[:200]!r}"]
    found = []
    for document in lines:
        for answer in document if isinstance(document, list) else [document]:
            if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
                found.append(f"not a JSON-RPC response: {answer!r:.200}")
                continue
            error = answer.get("error")
            if error is None:
                continue
            if error.get("code") == -32603:
                found.append(f"internal error: {error!r:.200}")
            message = json.dumps(error)
            checked = fuzz.problem(grpc.StatusCode.OK, message)
            if checked:
                found.append(checked)
    return found


@pytest.fixture
async def gateway(platform: Platform, start_gateway: StartGateway) -> GatewayClient:
    services = {name: await platform.start(name) for name in ("ideas", "votes", "rewards")}
    return await start_gateway(
        targets={name: s.address for name, s in services.items()},
        body_timeout_seconds=2,
        stream_deadline_seconds=2,
        rate_limit_per_second=0,
    )


async def test_hostile_http_gets_well_formed_answers(
    gateway: GatewayClient, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(SEED)
    methods = [m.full_name for m in Registry.load().methods]
    slots = asyncio.Semaphore(16)
    problems: list[str] = []

    async def one(index: int) -> None:
        body = hostile_body(rng, methods)
        path = rng.choice(["/rpc", "/rpc", "/rpc/stream"])
        headers = rng.choice(HEADERS)
        async with slots:
            try:
                answer = await gateway.post(raw=body, path=path, headers=headers)
            except aiohttp.ClientError as exc:
                problems.append(f"case {index} {path} {body[:80]!r}: broken answer {exc!r:.200}")
                return
        problems.extend(
            f"case {index} {path} {body[:80]!r}: {p}"
            for p in problems_in(path, answer.status, answer.body)
        )

    with caplog.at_level(logging.WARNING):
        await asyncio.gather(*(one(i) for i in range(CASES)))
    assert problems == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("cocreate.gateway")] == []
    health = await gateway.request("GET", "/healthz")
    assert health.status == 200
