"""`cocreate` against a real service: tokens, dead letters, the generic call,
and the exit code and message of each kind of failure."""

from __future__ import annotations

import json

import pytest

from deploy.localstack import free_port
from services.kit import auth, config
from services.kit.server import RunningService, ServiceDefinition
from tests.cli.conftest import RunCli, token
from tests.support import Platform

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)


@pytest.fixture
async def bare(platform: Platform) -> RunningService:
    return await platform.start("bare", definition=BARE)


async def test_token_mints_a_valid_development_jwt(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COCREATE_JWT_SECRET", raising=False)
    result = await run_cli("token", "--member", "pm-7", "--role", "pm", "--ttl", "60")
    assert result.code == 0
    caller = auth.verify_token("Bearer " + result.out.strip(), config.DEV_JWT_SECRET)
    assert caller == auth.Caller("pm-7", auth.Role.PM)


async def test_token_refuses_when_the_secret_is_not_the_development_one(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCREATE_JWT_SECRET", "a-production-secret-of-enough-length!")
    result = await run_cli("token", "--member", "m1")
    assert result.code == 4
    assert result.out == ""
    assert "refusing" in result.err


async def test_token_with_the_development_secret_configured_works(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCREATE_JWT_SECRET", config.DEV_JWT_SECRET)
    assert (await run_cli("token", "--member", "m1", "--role", "admin")).code == 0


async def test_deadletters_list_and_replay(bare: RunningService, run_cli: RunCli) -> None:
    flags = ("--votes", bare.address, "--token", token())
    listed = await run_cli("deadletters", "list", "--service", "votes", *flags)
    assert (listed.code, listed.out) == (0, "(none)\n")
    as_json = await run_cli("--output", "json", "deadletters", "list", "--service", "votes", *flags)
    assert json.loads(as_json.out) == []
    replay = await run_cli("deadletters", "replay", "--service", "votes", "42", *flags)
    assert replay.code == 3
    assert "NOT_FOUND" in replay.err and "42" in replay.err
    assert replay.err.count("\n") == 1


async def test_permission_and_authentication_failures_exit_4(
    bare: RunningService, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COCREATE_TOKEN", raising=False)
    member = await run_cli(
        "deadletters", "list", "--service", "votes", "--votes", bare.address,
        "--token", token("m1", "member"),
    )  # fmt: skip
    assert member.code == 4
    assert "PERMISSION_DENIED" in member.err
    anonymous = await run_cli("deadletters", "list", "--service", "votes", "--votes", bare.address)
    assert anonymous.code == 4
    assert "UNAUTHENTICATED" in anonymous.err and "COCREATE_TOKEN" in anonymous.err


async def test_token_and_target_come_from_the_environment(
    bare: RunningService, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCREATE_TOKEN", token())
    monkeypatch.setenv("COCREATE_REWARDS_TARGET", bare.address)
    result = await run_cli("deadletters", "list", "--service", "rewards")
    assert (result.code, result.out) == (0, "(none)\n")


async def test_invalid_argument_exits_5_with_the_field(
    bare: RunningService, run_cli: RunCli
) -> None:
    result = await run_cli(
        "call", "cocreate.ops.v1.DeadLetterService.ListDeadLetters", '{"pageSize": -1}',
        "--service", "ideas", "--ideas", bare.address, "--token", token(),
    )  # fmt: skip
    assert result.code == 5
    assert "INVALID_ARGUMENT" in result.err and "page_size" in result.err


async def test_generic_call_prints_the_response_as_json(
    bare: RunningService, run_cli: RunCli
) -> None:
    result = await run_cli(
        "call", "cocreate.ops.v1.DeadLetterService/ListDeadLetters", "{}",
        "--service", "ideas", "--ideas", bare.address, "--token", token(),
    )  # fmt: skip
    assert result.code == 0
    assert json.loads(result.out) == {"deadLetters": [], "nextPageToken": ""}


async def test_unreachable_service_exits_6_with_a_clear_message(run_cli: RunCli) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await run_cli(
        "deadletters", "list", "--service", "votes", "--votes", address, "--token", token()
    )
    assert result.code == 6
    assert f"cannot reach the votes service at {address}" in result.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ideas"],
        ["ideas", "status", "some-id", "teleported"],
        ["deadletters", "replay", "--service", "votes", "not-a-number"],
        ["call", "no.such.Method"],
        ["call", "cocreate.ops.v1.DeadLetterService.ListDeadLetters", "[1, 2]"],
        ["votes", "policy", "set", "core"],
    ],
)
async def test_usage_errors_exit_2(run_cli: RunCli, argv: list[str]) -> None:
    result = await run_cli(*argv, "--votes", "127.0.0.1:9")
    assert result.code == 2
    assert result.err
