"""The CLI in production mode, and the error details it shows a person."""

from __future__ import annotations

import json
import os

import jwt
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc

from services.kit import auth, config
from tests.cli.conftest import RunCli, token
from tests.support import Platform, metadata, stub

VOTES_CAST = "cocreate.votes.v1.VoteService.CastVote"


@pytest.mark.parametrize("environment", ["production", ""])
async def test_token_refuses_outside_development(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("COCREATE_ENV", environment)
    monkeypatch.delenv("COCREATE_JWT_SECRET", raising=False)
    result = await run_cli("token", "--member", "m1", "--role", "admin")
    assert result.code == 4
    assert result.out == ""
    assert "outside development" in result.err


async def test_token_carries_the_configured_issuer_and_audience_and_respects_the_max_ttl(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COCREATE_JWT_SECRET", raising=False)
    monkeypatch.setenv("COCREATE_JWT_ISSUER", "https://id.example")
    monkeypatch.setenv("COCREATE_JWT_AUDIENCE", "cocreate")
    monkeypatch.setenv("COCREATE_JWT_MAX_TTL_SECONDS", "600")
    result = await run_cli("token", "--member", "m1", "--ttl", "600")
    assert result.code == 0
    claims = jwt.decode(
        result.out.strip(), config.DEV_JWT_SECRET, algorithms=["HS256"], audience="cocreate"
    )
    assert claims["iss"] == "https://id.example"
    policy = config.token_policy(os.environ)
    assert auth.verify_token("Bearer " + result.out.strip(), config.DEV_JWT_SECRET, policy)
    too_long = await run_cli("token", "--member", "m1", "--ttl", "601")
    assert too_long.code == 2
    assert "COCREATE_JWT_MAX_TTL_SECONDS=600" in too_long.err


async def test_a_refused_status_change_says_what_may_follow_in_the_cli_words(
    platform: Platform, run_cli: RunCli
) -> None:
    service = await platform.start("ideas")
    api = stub(service, ideas_grpc.IdeaServiceStub)
    admin = metadata("admin-1", "admin")
    product = await api.CreateProduct(ideas.CreateProductRequest(name="Phone"), metadata=admin)
    idea = await api.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="Dark mode"),
        metadata=metadata("m-1"),
    )
    flags = ("--ideas", service.address, "--token", token("pm-1", "pm"))
    refused = await run_cli("ideas", "status", idea.idea.id, "shipped", *flags)
    assert refused.code == 5
    assert "cannot go from open to shipped" in refused.err
    assert "allowed next: under-review, declined" in refused.err
    assert "IDEA_STATUS_" not in refused.err
    for step in ("under-review", "planned", "in-progress", "shipped"):
        moved = await run_cli("ideas", "status", idea.idea.id, step, *flags)
        assert moved.code == 0, moved.err
    final = await run_cli("ideas", "status", idea.idea.id, "declined", *flags)
    assert final.code == 5
    assert "shipped is final" in final.err
    assert "IDEA_STATUS_" not in final.err


async def test_votes_void_can_ban_and_the_ban_can_be_lifted(
    platform: Platform, run_cli: RunCli
) -> None:
    service = await platform.start("votes")
    flags = ("--votes", service.address, "--token", token("pm-1", "pm"))
    banned = await run_cli(
        "--output", "json", "votes", "void", "--member", "spammer", "--reason", "bots", "--ban",
        *flags,
    )  # fmt: skip
    assert banned.code == 0, banned.err
    assert json.loads(banned.out)["banned"] is True
    cast = await run_cli(
        "call", VOTES_CAST, json.dumps({"ideaId": "00000000-0000-0000-0000-000000000001"}),
        "--votes", service.address, "--token", token("spammer", "member"),
    )  # fmt: skip
    assert cast.code == 4
    assert "VOTING_BANNED" in cast.err or "banned" in cast.err
    lifted = await run_cli("votes", "lift-ban", "--member", "spammer", "--reason", "human", *flags)
    assert lifted.code == 0, lifted.err
