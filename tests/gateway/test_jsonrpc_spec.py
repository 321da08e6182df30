"""The examples of the JSON-RPC 2.0 specification (section 7), on real methods.

`subtract`/`sum`/`update` become the DeadLetterService of a real service (the
one every service serves); positional params cannot map to a protobuf message,
so they answer -32602 where the specification's server computed a result.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.kit.server import ServiceDefinition
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)
LIST = "cocreate.ops.v1.DeadLetterService.ListDeadLetters"
REPLAY = "cocreate.ops.v1.DeadLetterService.ReplayDeadLetter"
EMPTY_PAGE = {"deadLetters": [], "nextPageToken": ""}


@pytest.fixture
async def gateway(platform: Platform, start_gateway: StartGateway) -> GatewayClient:
    service = await platform.start("bare", definition=BARE)
    return await start_gateway(
        targets={"votes": service.address},
        headers={**bearer(), "X-Cocreate-Service": "votes"},
    )


def by_id(answers: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {a["id"]: a for a in answers}


async def test_positional_params_are_invalid_params(gateway: GatewayClient) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "params": [42, 23], "id": 1})
    assert answer.status == 200
    assert answer.json["id"] == 1
    assert answer.json["error"]["code"] == -32602
    assert "result" not in answer.json


async def test_named_params_call_returns_the_response_in_json_mapping(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.post(
        {"jsonrpc": "2.0", "method": LIST, "params": {"pageSize": 5}, "id": 3}
    )
    assert answer.json == {"jsonrpc": "2.0", "result": EMPTY_PAGE, "id": 3}


async def test_params_may_be_omitted(gateway: GatewayClient) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "id": "a"})
    assert answer.json == {"jsonrpc": "2.0", "result": EMPTY_PAGE, "id": "a"}


async def test_notification_gets_no_answer(gateway: GatewayClient) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "params": [1, 2, 3, 4, 5]})
    assert (answer.status, answer.body) == (204, b"")
    answer = await gateway.post({"jsonrpc": "2.0", "method": LIST, "params": {"pageSize": 1}})
    assert (answer.status, answer.body) == (204, b"")


async def test_non_existent_method(gateway: GatewayClient) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": "foobar", "id": "1"})
    assert answer.json["id"] == "1"
    assert answer.json["error"]["code"] == -32601
    assert answer.json["error"]["message"] == "Method not found"


async def test_invalid_json_is_a_parse_error(gateway: GatewayClient) -> None:
    answer = await gateway.post(raw=b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert answer.json["error"]["code"] == -32700
    assert answer.json["id"] is None


async def test_invalid_request_object(gateway: GatewayClient) -> None:
    answer = await gateway.post({"jsonrpc": "2.0", "method": 1, "params": "bar"})
    assert answer.json["error"]["code"] == -32600
    assert answer.json["id"] is None


async def test_batch_with_invalid_json_is_one_parse_error(gateway: GatewayClient) -> None:
    answer = await gateway.post(
        raw=b'[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        b'{"jsonrpc": "2.0", "method"]'
    )
    assert isinstance(answer.json, dict)
    assert answer.json["error"]["code"] == -32700
    assert answer.json["id"] is None


async def test_empty_batch_is_one_invalid_request(gateway: GatewayClient) -> None:
    answer = await gateway.post([])
    assert isinstance(answer.json, dict)
    assert answer.json["error"]["code"] == -32600
    assert answer.json["id"] is None


@pytest.mark.parametrize("batch", [[1], [1, 2, 3]])
async def test_invalid_batch_answers_each_element(gateway: GatewayClient, batch: list[int]) -> None:
    answer = await gateway.post(batch)
    assert isinstance(answer.json, list)
    assert len(answer.json) == len(batch)
    for element in answer.json:
        assert element["error"]["code"] == -32600
        assert element["id"] is None


async def test_mixed_batch_answers_every_call_but_the_notification(
    gateway: GatewayClient,
) -> None:
    answer = await gateway.post(
        [
            {"jsonrpc": "2.0", "method": LIST, "params": {"pageSize": 2}, "id": "1"},
            {"jsonrpc": "2.0", "method": LIST, "params": {"pageSize": 7}},
            {"jsonrpc": "2.0", "method": REPLAY, "params": {"id": "42"}, "id": "2"},
            {"foo": "boo"},
            {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
            {"jsonrpc": "2.0", "method": LIST, "params": [17], "id": "9"},
        ]
    )
    assert answer.status == 200
    answers = answer.json
    assert len(answers) == 5
    assert [a["id"] for a in answers].count(None) == 1
    found = by_id(answers)
    assert found["1"]["result"] == EMPTY_PAGE
    assert found["2"]["error"]["code"] == -32005
    assert found["2"]["error"]["data"]["grpcStatus"] == "NOT_FOUND"
    assert found[None]["error"]["code"] == -32600
    assert found["5"]["error"]["code"] == -32601
    assert found["9"]["error"]["code"] == -32602


async def test_batch_of_notifications_answers_nothing(gateway: GatewayClient) -> None:
    answer = await gateway.post(
        [
            {"jsonrpc": "2.0", "method": LIST, "params": [1, 2, 4]},
            {"jsonrpc": "2.0", "method": LIST, "params": {"pageSize": 3}},
        ]
    )
    assert (answer.status, answer.body) == (204, b"")
