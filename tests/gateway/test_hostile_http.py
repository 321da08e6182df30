"""Finding 3: the gateway answers hostile HTTP with JSON-RPC errors, never a
500 or a hang; endless streams only on /rpc/stream; a body-read timeout; caps
on concurrent calls and streams; a per-client rate limit answered with 429."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from cocreate.votes.v1 import notification_service_pb2 as notifications
from cocreate.votes.v1 import notification_service_pb2_grpc as notifications_grpc

from tests.gateway.conftest import GatewayClient, StartGateway, bearer

WATCH = "cocreate.votes.v1.NotificationService.WatchNotifications"
LIST = "cocreate.votes.v1.NotificationService.ListNotifications"


class EndlessNotifications(notifications_grpc.NotificationServiceServicer):
    """An upstream whose streams stay open (headers sent, no message) and whose
    unary calls never answer, until the test ends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.watching = 0

    async def WatchNotifications(
        self, request: notifications.WatchNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[notifications.WatchNotificationsResponse]:
        await context.send_initial_metadata(())
        self.watching += 1
        try:
            await self.release.wait()
        finally:
            self.watching -= 1
        if False:  # an async generator that yields nothing
            yield notifications.WatchNotificationsResponse()

    async def ListNotifications(
        self, request: notifications.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> notifications.ListNotificationsResponse:
        await self.release.wait()
        return notifications.ListNotificationsResponse()

    async def MarkNotificationsRead(
        self,
        request: notifications.MarkNotificationsReadRequest,
        context: grpc.aio.ServicerContext,
    ) -> notifications.MarkNotificationsReadResponse:
        return notifications.MarkNotificationsReadResponse()


@pytest.fixture
async def endless() -> AsyncIterator[tuple[str, EndlessNotifications]]:
    servicer = EndlessNotifications()
    server = grpc.aio.server()
    notifications_grpc.add_NotificationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        servicer.release.set()
        await server.stop(0)


async def raw_exchange(client: GatewayClient, head: bytes, body: bytes = b"") -> bytes:
    """Sends exactly these bytes (headers unescaped) and reads the whole answer."""
    host, _, port = client.url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def answer_json(raw: bytes) -> tuple[int, object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_lone_surrogates_in_id_or_method_are_parse_errors(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(headers=bearer())
    for raw in (
        b'{"jsonrpc":"2.0","id":"\\ud800","method":"' + LIST.encode() + b'"}',
        b'{"jsonrpc":"2.0","id":1,"method":"cocreate.\\udfff.x"}',
        b'[{"jsonrpc":"2.0","id":1,"method":"m","params":{"\\ud83d":1}}]',
    ):
        answer = await gateway.post(raw=raw)
        assert answer.status == 200
        assert answer.json["error"]["code"] == -32700
        assert answer.json["id"] is None


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
async def test_deep_nesting_is_refused(start_gateway: StartGateway, opening: bytes) -> None:
    gateway = await start_gateway(headers=bearer())
    closing = b"]" if opening == b"[" else b"}"
    for depth in (65, 10_000):
        answer = await gateway.post(raw=opening * depth + b"1" + closing * depth)
        assert answer.status == 200
        assert answer.json["error"]["code"] == -32600
        assert answer.json["error"]["data"]["limit"] == 64


async def test_numbers_beyond_a_double_are_parse_errors(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(headers=bearer())
    for number in (b"1e400", b"-1e400", b"1" + b"0" * 400 + b".0"):
        answer = await gateway.post(raw=b'{"jsonrpc":"2.0","id":' + number + b',"method":"m"}')
        assert answer.status == 200
        assert answer.json["error"]["code"] == -32700  # and the body is valid JSON


@pytest.mark.parametrize(
    "authorization", [b"Bearer\tabc", b"Bearer a\tb", "Bearer \u00e9t\u00e9".encode()]
)
async def test_authorization_headers_grpc_cannot_carry_are_invalid_requests(
    start_gateway: StartGateway, authorization: bytes
) -> None:
    gateway = await start_gateway()
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": LIST, "params": {}}).encode()
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nAuthorization: " + authorization + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    )
    status, answer = answer_json(await raw_exchange(gateway, head, body))
    assert status == 200
    assert isinstance(answer, dict) and answer["error"]["code"] == -32600


async def test_endless_streams_are_refused_on_rpc_at_once(
    start_gateway: StartGateway, endless: tuple[str, EndlessNotifications]
) -> None:
    target, servicer = endless
    gateway = await start_gateway(targets={"votes": target}, headers=bearer("m1", "member"))
    single = await gateway.call(WATCH, {})
    assert single["error"]["code"] == -32009
    assert single["error"]["data"]["grpcStatus"] == "FAILED_PRECONDITION"
    assert single["error"]["data"]["endpoint"] == "/rpc/stream"
    batch = [{"jsonrpc": "2.0", "id": i, "method": WATCH, "params": {}} for i in range(100)]
    answers = (await gateway.post(batch)).json
    assert {a["error"]["code"] for a in answers} == {-32009}
    assert servicer.watching == 0


async def test_a_trickling_body_is_cut_off(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(body_timeout_seconds=0.3)
    head = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n"
    )
    status, answer = answer_json(await raw_exchange(gateway, head, b'{"jsonrpc"'))
    assert status == 408
    assert isinstance(answer, dict) and answer["error"]["data"]["timeoutSeconds"] == 0.3


async def _open_stream(gateway: GatewayClient) -> tuple[object, asyncio.StreamReader]:
    """A WatchNotifications on /rpc/stream, open once its headers arrived."""
    host, _, port = gateway.url.removeprefix("http://").rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": WATCH, "params": {}}).encode()
    authorization = bearer("m1", "member")["Authorization"].encode()
    writer.write(
        b"POST /rpc/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: " + authorization + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    status_line = await reader.readline()
    assert b" 200 " in status_line, status_line
    return writer, reader


async def test_streams_per_client_are_capped(
    start_gateway: StartGateway, endless: tuple[str, EndlessNotifications]
) -> None:
    target, servicer = endless
    gateway = await start_gateway(
        targets={"votes": target}, headers=bearer("m1", "member"), max_streams_per_client=2
    )
    opened = [await _open_stream(gateway) for _ in range(2)]
    third = await gateway.post({"jsonrpc": "2.0", "id": 3, "method": WATCH}, path="/rpc/stream")
    [line] = third.lines
    assert line["error"]["code"] == -32008
    assert line["error"]["data"]["grpcStatus"] == "RESOURCE_EXHAUSTED"
    assert line["error"]["data"]["limit"] == 2
    assert servicer.watching == 2
    for writer, _reader in opened:
        writer.close()  # type: ignore[attr-defined]


async def test_calls_per_client_wait_for_a_slot_within_the_deadline(
    start_gateway: StartGateway, endless: tuple[str, EndlessNotifications]
) -> None:
    target, _servicer = endless
    gateway = await start_gateway(
        targets={"votes": target},
        headers=bearer("m1", "member"),
        max_calls_per_client=1,
        deadline_seconds=0.5,
    )
    batch = [{"jsonrpc": "2.0", "id": i, "method": LIST, "params": {}} for i in range(2)]
    answers = {a["id"]: a for a in (await gateway.post(batch)).json}
    statuses = sorted(a["error"]["data"]["grpcStatus"] for a in answers.values())
    assert statuses == ["DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"]


async def test_the_rate_limit_answers_429_with_when_to_retry(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(headers=bearer(), rate_limit_per_second=0.5, rate_limit_burst=3)
    request = {"jsonrpc": "2.0", "id": 1, "method": "no.such.Method"}
    for _ in range(3):
        assert (await gateway.post(request)).status == 200
    limited = await gateway.post(request)
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "2"
    error = limited.json["error"]
    assert error["code"] == -32008
    assert error["data"]["grpcStatus"] == "RESOURCE_EXHAUSTED"
    assert 0 < error["data"]["retryAfterSeconds"] <= 2
    # A batch costs one per call.
    fresh = await start_gateway(headers=bearer(), rate_limit_per_second=0.5, rate_limit_burst=3)
    assert (await fresh.post(request)).status == 200
    assert (await fresh.post([request] * 3)).status == 429
