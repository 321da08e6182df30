"""Round trips through the gateway to the real services: every method of the
ideas, votes and rewards APIs answers a well-formed JSON-RPC response, and real
calls carry their data both ways."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from services.gateway.methods import Method, Registry
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform

SERVICES = ("ideas", "votes", "rewards")
# What a caller's mistake must never become.
SERVER_FAULTS = {"INTERNAL", "UNKNOWN", "UNIMPLEMENTED", "UNAVAILABLE", "DEADLINE_EXCEEDED"}
# Live streams stay open until something happens: through /rpc they end at the
# gateway's stream deadline, which these tests set short.
OPEN_ENDED_STREAMS = {"cocreate.votes.v1.NotificationService.WatchNotifications"}
STREAM_DEADLINE_SECONDS = 1.5


@pytest.fixture
async def gateway(platform: Platform, start_gateway: StartGateway) -> GatewayClient:
    targets = {}
    for name in SERVICES:
        targets[name] = (await platform.start(name)).address
    return await start_gateway(
        targets=targets,
        headers=bearer("admin-1", "admin"),
        stream_deadline_seconds=STREAM_DEADLINE_SECONDS,
    )


def service_methods(platform: Platform) -> list[Method]:
    """Every method of every gRPC service the three services serve."""
    served = {name for s in platform.running for name in s.definition.service_names}
    assert {
        "cocreate.ideas.v1.IdeaService",
        "cocreate.votes.v1.VoteService",
        "cocreate.rewards.v1.RewardsService",
    } <= served
    return [m for m in Registry.load().methods if m.full_name.rpartition(".")[0] in served]


def problem_with(method: Method, answer: Any, expected_id: Any) -> str | None:
    """What is wrong with a response object, or None."""
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        return f"not a JSON-RPC 2.0 response: {answer!r}"
    if answer.get("id") != expected_id:
        return f"id {answer.get('id')!r}, expected {expected_id!r}"
    if ("result" in answer) == ("error" in answer):
        return "needs exactly one of result and error"
    if "result" in answer:
        expected_type = list if method.server_streaming else dict
        if not isinstance(answer["result"], expected_type):
            return f"result is {type(answer['result']).__name__}"
        return None
    error = answer["error"]
    if not isinstance(error.get("code"), int) or not isinstance(error.get("message"), str):
        return f"malformed error {error!r}"
    status = (error.get("data") or {}).get("grpcStatus")
    if method.full_name in OPEN_ENDED_STREAMS and status == "DEADLINE_EXCEEDED":
        return None if error["code"] == -32004 else f"DEADLINE_EXCEEDED mapped to {error['code']}"
    if status is None or status in SERVER_FAULTS or error["code"] == -32603:
        return f"server fault {error!r}"
    number = grpc.StatusCode[status].value[0]
    expected = -32602 if status == "INVALID_ARGUMENT" else -32000 - number
    if error["code"] != expected:
        return f"{status} mapped to {error['code']}, expected {expected}"
    return None


async def test_every_method_answers_a_well_formed_response(
    platform: Platform, gateway: GatewayClient
) -> None:
    methods = service_methods(platform)
    problems = []
    for method in methods:
        for role in ("admin", "member"):
            answer = await gateway.call(method.full_name, {}, headers=bearer("x-1", role))
            problem = problem_with(method, answer, 1)
            if problem:
                problems.append(f"{method.full_name} as {role}: {problem}")
    assert problems == []


async def test_every_method_in_one_batch(platform: Platform, gateway: GatewayClient) -> None:
    methods = service_methods(platform)
    batch = [
        {"jsonrpc": "2.0", "method": m.full_name, "params": {}, "id": i}
        for i, m in enumerate(methods)
    ]
    answer = await gateway.post(batch)
    assert answer.status == 200
    by_id = {a["id"]: a for a in answer.json}
    assert sorted(by_id) == list(range(len(methods)))
    problems = [
        f"{m.full_name}: {p}"
        for i, m in enumerate(methods)
        if (p := problem_with(m, by_id[i], i)) is not None
    ]
    assert problems == []


async def test_rewards_mutation_and_read_back(
    platform: Platform, start_gateway: StartGateway
) -> None:
    rewards = await platform.start("rewards")
    gateway = await start_gateway(targets={"rewards": rewards.address}, headers=bearer())
    granted = await gateway.call(
        "cocreate.rewards.v1.RewardsService.GrantPoints",
        {"memberId": "m-1", "amount": 25, "reason": "thanks", "requestId": "r-1"},
    )
    assert granted["result"]["account"]["balance"] == "25"
    account = await gateway.call(
        "cocreate.rewards.v1.RewardsService.GetAccount",
        {"memberId": "m-1"},
        headers=bearer("m-1", "member"),
    )
    assert account["result"]["account"]["memberId"] == "m-1"
    assert account["result"]["account"]["balance"] == "25"
    other = await gateway.call(
        "cocreate.rewards.v1.RewardsService.GetAccount",
        {"memberId": "m-1"},
        headers=bearer("m-2", "member"),
    )
    assert other["error"]["data"]["grpcStatus"] == "PERMISSION_DENIED"


async def test_votes_policy_round_trip_with_a_map_field(
    platform: Platform, start_gateway: StartGateway
) -> None:
    votes = await platform.start("votes")
    gateway = await start_gateway(targets={"votes": votes.address}, headers=bearer())
    weights = {"newcomer": 1, "member": 2, "core": 4, "honorary": 8}
    updated = await gateway.call(
        "cocreate.votes.v1.VoteService.UpdateWeightPolicy", {"weights": weights}
    )
    assert updated["result"]["policy"]["weights"] == weights
    read = await gateway.call("cocreate.votes.v1.VoteService.GetWeightPolicy", {})
    assert read["result"]["policy"]["weights"] == weights
    assert read["result"]["policy"]["updatedBy"] == "a1"


async def test_ideas_submit_read_and_export_through_the_gateway(
    gateway: GatewayClient,
) -> None:
    ideas = "cocreate.ideas.v1.IdeaService."
    product = await gateway.call(ideas + "CreateProduct", {"name": "Mobile app"})
    product_id = product["result"]["product"]["id"]
    member = bearer("member-9", "member")
    submitted = await gateway.call(
        ideas + "SubmitIdea",
        {"productId": product_id, "title": "离线模式 <b>offline</b>", "tags": ["sync"]},
        headers=member,
    )
    idea = submitted["result"]["idea"]
    assert idea["authorId"] == "member-9"
    assert idea["status"] == "IDEA_STATUS_OPEN"

    read = await gateway.call(ideas + "GetIdea", {"ideaId": idea["id"]}, headers=member)
    assert read["result"]["idea"]["title"] == "离线模式 <b>offline</b>"

    invalid = await gateway.call(
        ideas + "SubmitIdea", {"productId": product_id, "title": "x"}, headers=member
    )
    assert invalid["error"]["code"] == -32602
    assert "title" in {v["field"] for v in invalid["error"]["data"]["fieldViolations"]}

    streamed = await gateway.post(
        {"jsonrpc": "2.0", "method": ideas + "ExportIdeas", "params": {}, "id": "e"},
        path="/rpc/stream",
        headers=bearer("pm-1", "pm"),
    )
    exported = [row for line in streamed.lines for row in line["result"]["ideas"]]
    assert [row["id"] for row in exported] == [idea["id"]]
    assert exported[0]["productName"] == "Mobile app"
