"""How the gateway answers bad params, upstream errors, its limits, CORS and health."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from cocreate.ops.v1 import dead_letter_service_pb2 as ops
from cocreate.ops.v1 import dead_letter_service_pb2_grpc as ops_grpc

from deploy.localstack import free_port
from services.kit.server import RunningService, ServiceDefinition
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)
LIST = "cocreate.ops.v1.DeadLetterService.ListDeadLetters"
REPLAY = "cocreate.ops.v1.DeadLetterService.ReplayDeadLetter"
VOTES = {"X-Cocreate-Service": "votes"}


@pytest.fixture
async def bare(platform: Platform) -> RunningService:
    return await platform.start("bare", definition=BARE)


@pytest.fixture
async def gateway(bare: RunningService, start_gateway: StartGateway) -> GatewayClient:
    return await start_gateway(targets={"votes": bare.address}, headers={**bearer(), **VOTES})


async def test_unknown_field_is_invalid_params_naming_it(gateway: GatewayClient) -> None:
    answer = await gateway.call(LIST, {"pageSize": 1, "bogus": True})
    error = answer["error"]
    assert error["code"] == -32602
    assert error["data"]["fieldViolations"] == [
        {"field": "bogus", "description": "unknown field of cocreate.ops.v1.ListDeadLettersRequest"}
    ]


async def test_value_of_the_wrong_type_is_invalid_params_naming_the_field(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.call(LIST, {"pageSize": "many", "pageToken": 7})
    fields = {v["field"] for v in answer["error"]["data"]["fieldViolations"]}
    assert answer["error"]["code"] == -32602
    assert fields == {"pageSize", "pageToken"}


async def test_proto_field_names_are_accepted_too(gateway: GatewayClient) -> None:
    answer = await gateway.call(LIST, {"page_size": 2})
    assert answer["result"] == {"deadLetters": [], "nextPageToken": ""}


async def test_upstream_invalid_argument_is_invalid_params_with_its_violations(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.call(LIST, {"pageSize": -1})
    error = answer["error"]
    assert error["code"] == -32602
    assert error["data"]["grpcStatus"] == "INVALID_ARGUMENT"
    assert [v["field"] for v in error["data"]["fieldViolations"]] == ["page_size"]
    types = {d["@type"] for d in error["data"]["details"]}
    assert "type.googleapis.com/google.rpc.BadRequest" in types


async def test_upstream_status_maps_to_application_code_with_details(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.call(REPLAY, {"id": "42"})
    error = answer["error"]
    assert error["code"] == -32000 - grpc.StatusCode.NOT_FOUND.value[0]
    assert error["data"]["grpcStatus"] == "NOT_FOUND"
    assert "42" in error["data"]["message"]
    info = next(d for d in error["data"]["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "NOT_FOUND"


async def test_authorization_header_is_passed_on_and_the_service_decides(
    gateway: GatewayClient,
) -> None:
    member = await gateway.call(LIST, {}, headers=bearer("m1", "member"))
    assert member["error"]["code"] == -32007
    assert member["error"]["data"]["grpcStatus"] == "PERMISSION_DENIED"
    anonymous = await gateway.call(LIST, {}, headers={"Authorization": ""})
    assert anonymous["error"]["code"] == -32016
    assert anonymous["error"]["data"]["grpcStatus"] == "UNAUTHENTICATED"
    admin = await gateway.call(LIST, {})
    assert "result" in admin


@pytest.mark.parametrize(
    "name",
    [
        "cocreate.ops.v1.DeadLetterService/ListDeadLetters",
        "/cocreate.ops.v1.DeadLetterService/ListDeadLetters",
    ],
)
async def test_slash_form_of_the_method_name_works(gateway: GatewayClient, name: str) -> None:
    answer = await gateway.call(name, {})
    assert answer["result"] == {"deadLetters": [], "nextPageToken": ""}


async def test_shared_ops_methods_need_the_service_header(gateway: GatewayClient) -> None:
    answer = await gateway.call(LIST, {}, headers={"X-Cocreate-Service": ""})
    assert answer["error"]["code"] == -32602
    assert "X-Cocreate-Service" in answer["error"]["data"]["reason"]


async def test_body_over_the_limit_is_refused(
    bare: RunningService, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        targets={"votes": bare.address}, headers={**bearer(), **VOTES}, max_body_bytes=200
    )
    answer = await gateway.post(
        raw=b'{"jsonrpc": "2.0", "method": "x", "id": 1, "p": "' + b"x" * 300 + b'"}'
    )
    assert answer.status == 413
    assert answer.json["error"]["code"] == -32600
    assert answer.json["error"]["data"] == {"limitBytes": 200}


async def test_batch_over_the_limit_is_refused(
    bare: RunningService, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        targets={"votes": bare.address}, headers={**bearer(), **VOTES}, max_batch=3
    )
    call = {"jsonrpc": "2.0", "method": LIST, "id": 1}
    answer = await gateway.post([call] * 4)
    assert answer.json["error"]["code"] == -32600
    assert answer.json["error"]["data"] == {"limit": 3, "size": 4}
    answer = await gateway.post([call] * 3)
    assert len(answer.json) == 3


class StuckDeadLetters(ops_grpc.DeadLetterServiceServicer):
    """An upstream that answers only when released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def ListDeadLetters(
        self, request: ops.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> ops.ListDeadLettersResponse:
        await self.release.wait()
        return ops.ListDeadLettersResponse()

    async def ReplayDeadLetter(
        self, request: ops.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> ops.ReplayDeadLetterResponse:
        await self.release.wait()
        return ops.ReplayDeadLetterResponse()


@pytest.fixture
async def stuck_upstream() -> AsyncIterator[str]:
    servicer = StuckDeadLetters()
    server = grpc.aio.server()
    ops_grpc.add_DeadLetterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        servicer.release.set()
        await server.stop(0)


async def test_call_over_the_deadline_is_a_clear_error(
    stuck_upstream: str, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        targets={"votes": stuck_upstream}, headers=VOTES, deadline_seconds=0.3
    )
    answer = await gateway.call(LIST, {})
    error = answer["error"]
    assert error["code"] == -32000 - grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert error["data"]["grpcStatus"] == "DEADLINE_EXCEEDED"
    assert error["data"]["deadlineSeconds"] == 0.3
    assert "0.3s" in error["message"]


async def test_unreachable_upstream_is_a_clear_error(start_gateway: StartGateway) -> None:
    target = f"127.0.0.1:{free_port()}"
    gateway = await start_gateway(targets={"votes": target}, headers=VOTES)
    answer = await gateway.call(LIST, {})
    error = answer["error"]
    assert error["code"] == -32000 - grpc.StatusCode.UNAVAILABLE.value[0]
    assert error["data"]["grpcStatus"] == "UNAVAILABLE"
    assert f"the votes service at {target} is unavailable" in error["message"]


async def test_cors_allows_only_the_configured_origins(
    bare: RunningService, start_gateway: StartGateway
) -> None:
    gateway = await start_gateway(
        targets={"votes": bare.address},
        headers={**bearer(), **VOTES},
        cors_origins=("https://app.example",),
    )
    allowed = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    preflight = await gateway.request("OPTIONS", "/rpc", headers=allowed)
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "id": 1}, headers=allowed)
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"

    other = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    preflight = await gateway.request("OPTIONS", "/rpc", headers=other)
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_health_and_readiness(bare: RunningService, start_gateway: StartGateway) -> None:
    down = f"127.0.0.1:{free_port()}"
    gateway = await start_gateway(
        targets={"ideas": bare.address, "votes": bare.address, "rewards": down}
    )
    health = await gateway.request("GET", "/healthz")
    assert (health.status, health.json["status"]) == (200, "ok")
    ready = await gateway.request("GET", "/readyz")
    assert ready.status == 503
    assert ready.json["upstreams"] == {
        "ideas": "SERVING",
        "votes": "SERVING",
        "rewards": "UNAVAILABLE",
    }


async def test_unary_method_on_the_streaming_endpoint_is_one_line(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "id": 4}, path="/rpc/stream")
    assert answer.lines == [
        {"jsonrpc": "2.0", "result": {"deadLetters": [], "nextPageToken": ""}, "id": 4}
    ]
    failed = await gateway.post(
        {"jsonrpc": "2.0", "method": REPLAY, "params": {"id": "9"}, "id": 5}, path="/rpc/stream"
    )
    assert [line["error"]["data"]["grpcStatus"] for line in failed.lines] == ["NOT_FOUND"]


async def test_json_constants_that_are_not_json_are_a_parse_error(gateway: GatewayClient) -> None:
    answer = await gateway.post(raw=b'{"jsonrpc": "2.0", "method": "m", "params": NaN, "id": 1}')
    assert answer.json["error"]["code"] == -32700


async def test_methods_and_console_page_are_served(gateway: GatewayClient) -> None:
    methods = await gateway.request("GET", "/methods")
    listed = {m["method"]: m for m in methods.json}
    assert listed[LIST] == {
        "method": LIST,
        "serverStreaming": False,
        "request": "cocreate.ops.v1.ListDeadLettersRequest",
        "response": "cocreate.ops.v1.ListDeadLettersResponse",
    }
    page = await gateway.request("GET", "/console")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert b"/rpc" in page.body


async def test_nested_field_violations_are_named_by_their_path(gateway: GatewayClient) -> None:
    answer = await gateway.call(
        "cocreate.ideas.v1.IdeaService.ListIdeas",
        {"filter": {"statuses": ["IDEA_STATUS_OPEN", "ASLEEP"], "bogus": 1}, "pageSize": 5},
    )
    error = answer["error"]
    assert error["code"] == -32602
    assert {v["field"] for v in error["data"]["fieldViolations"]} == {
        "filter.statuses",
        "filter.bogus",
    }
