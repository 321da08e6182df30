"""Server-streaming methods: a JSON array on /rpc, NDJSON on /rpc/stream, and
an error during the stream as the last line. The upstream here is a small real
gRPC server that streams scripted export rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas

from tests.gateway.conftest import GatewayClient, StartGateway, bearer

EXPORT = "cocreate.ideas.v1.IdeaService.ExportIdeas"
# Set when a `slow` export's wait ends (its call was cancelled).
SLOW_CALL_ENDED = asyncio.Event()


async def export_rows(
    request: ideas.ExportIdeasRequest, context: grpc.aio.ServicerContext
) -> AsyncIterator[ideas.ExportIdeasResponse]:
    """`limit` rows; a filter on the tag `broken` fails after two rows; the tag
    `slow` waits for a cancellation that only the deadline brings."""
    count = request.limit or 3
    for number in range(1, count + 1):
        if request.filter.tag == "broken" and number == 3:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the export broke")
        if request.filter.tag == "slow" and number == 2:
            try:
                await asyncio.Event().wait()
            finally:
                SLOW_CALL_ENDED.set()
        idea = ideas.ExportedIdea(
            id=f"i{number}",
            number=number,
            title=f"idea {number}",
            tags=["a", "b"],
            voters_by_tier={"core": number},
        )
        yield ideas.ExportIdeasResponse(ideas=[idea])


def idea(message: dict[str, Any]) -> dict[str, Any]:
    """The one idea each message of the stand-in export carries."""
    (only,) = message["ideas"]
    return dict(only)


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "cocreate.ideas.v1.IdeaService",
        {
            "ExportIdeas": grpc.unary_stream_rpc_method_handler(
                export_rows,
                request_deserializer=ideas.ExportIdeasRequest.FromString,
                response_serializer=ideas.ExportIdeasResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@pytest.fixture
async def gateway(upstream: str, start_gateway: StartGateway) -> GatewayClient:
    return await start_gateway(targets={"ideas": upstream}, headers=bearer("pm-1", "pm"))


async def test_streaming_method_on_rpc_is_a_json_array(gateway: GatewayClient) -> None:
    answer = await gateway.call(EXPORT, {"limit": 4})
    result = answer["result"]
    assert [idea(message)["number"] for message in result] == [1, 2, 3, 4]
    assert idea(result[0])["votersByTier"] == {"core": 1}
    assert idea(result[0])["tags"] == ["a", "b"]


async def test_streaming_endpoint_answers_ndjson_one_response_per_message(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"limit": 5}, "id": "x"},
        path="/rpc/stream",
    )
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    lines = answer.lines
    assert [idea(line["result"])["id"] for line in lines] == ["i1", "i2", "i3", "i4", "i5"]
    assert all(line["id"] == "x" and line["jsonrpc"] == "2.0" for line in lines)


async def test_error_during_the_stream_is_the_last_line(gateway: GatewayClient) -> None:
    answer = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"filter": {"tag": "broken"}}, "id": 7},
        path="/rpc/stream",
    )
    lines = answer.lines
    assert [idea(line["result"])["number"] for line in lines[:-1]] == [1, 2]
    assert lines[-1]["id"] == 7
    assert lines[-1]["error"]["code"] == -32009
    assert lines[-1]["error"]["data"]["grpcStatus"] == "FAILED_PRECONDITION"

    on_rpc = await gateway.call(EXPORT, {"filter": {"tag": "broken"}})
    assert on_rpc["error"]["data"]["grpcStatus"] == "FAILED_PRECONDITION"


async def test_stream_over_its_deadline_ends_with_a_deadline_error(
    upstream: str, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(targets={"ideas": upstream}, stream_deadline_seconds=0.5)
    answer = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"filter": {"tag": "slow"}}, "id": 1},
        path="/rpc/stream",
    )
    lines = answer.lines
    assert idea(lines[0]["result"])["number"] == 1
    assert lines[-1]["error"]["data"]["grpcStatus"] == "DEADLINE_EXCEEDED"
    assert "0.5s" in lines[-1]["error"]["message"]


async def test_streaming_endpoint_reports_request_errors_as_one_line(
    gateway: GatewayClient,
) -> None:
    batch = await gateway.post([{"jsonrpc": "2.0", "method": EXPORT, "id": 1}], path="/rpc/stream")
    assert [line["error"]["code"] for line in batch.lines] == [-32600]
    unknown = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"nope": 1}, "id": 2}, path="/rpc/stream"
    )
    assert [line["error"]["code"] for line in unknown.lines] == [-32602]
    missing = await gateway.post({"jsonrpc": "2.0", "method": "x.Y.Z", "id": 3}, path="/rpc/stream")
    assert [(line["id"], line["error"]["code"]) for line in missing.lines] == [(3, -32601)]
    notification = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"limit": 2}}, path="/rpc/stream"
    )
    assert (notification.status, notification.body) == (204, b"")


async def test_stream_longer_than_the_limit_on_rpc_points_to_the_stream_endpoint(
    upstream: str, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(targets={"ideas": upstream}, max_stream_items=3)
    assert len((await gateway.call(EXPORT, {"limit": 3}))["result"]) == 3
    answer = await gateway.call(EXPORT, {"limit": 4})
    assert answer["error"]["code"] == -32099
    assert answer["error"]["data"] == {"limit": 3}
    assert "/rpc/stream" in answer["error"]["message"]
    streamed = await gateway.post(
        {"jsonrpc": "2.0", "method": EXPORT, "params": {"limit": 4}, "id": 1}, path="/rpc/stream"
    )
    assert len(streamed.lines) == 4


async def test_client_going_away_ends_the_upstream_stream(gateway: GatewayClient) -> None:
    SLOW_CALL_ENDED.clear()
    request = {"jsonrpc": "2.0", "method": EXPORT, "params": {"filter": {"tag": "slow"}}, "id": 1}
    response = await gateway.session.post(
        gateway.url + "/rpc/stream", json=request, headers=gateway.headers
    )
    try:
        first = json.loads(await asyncio.wait_for(response.content.readline(), 10))
        assert idea(first["result"])["number"] == 1
        assert not SLOW_CALL_ENDED.is_set()
    finally:
        response.close()
    # Long before the gateway's stream deadline (300 s by default).
    await asyncio.wait_for(SLOW_CALL_ENDED.wait(), 10)
