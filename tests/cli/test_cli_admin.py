"""Admin commands against the real votes and rewards services."""

from __future__ import annotations

import json

from tests.cli.conftest import RunCli, token
from tests.support import Platform


async def test_votes_policy_get_and_set(platform: Platform, run_cli: RunCli) -> None:
    votes = await platform.start("votes")
    flags = ("--votes", votes.address, "--token", token())
    shown = await run_cli("votes", "policy", "get", *flags)
    assert shown.code == 0, shown.err
    assert shown.out.splitlines()[0].split() == ["TIER", "WEIGHT"]

    changed = await run_cli("votes", "policy", "set", "newcomer=1", "member=4", "core=9", *flags)
    assert changed.code == 0, changed.err
    read = await run_cli("--output", "json", "votes", "policy", "get", *flags)
    assert json.loads(read.out)["weights"] == {"newcomer": 1, "member": 4, "core": 9}

    refused = await run_cli(
        "votes",
        "policy",
        "set",
        "core=2",
        "--votes",
        votes.address,
        "--token",
        token("m", "member"),
    )
    assert refused.code == 4
    invalid = await run_cli("votes", "policy", "set", "core=0", *flags)
    assert invalid.code == 5
    assert "INVALID_ARGUMENT" in invalid.err


async def test_rewards_rules_list_and_set(platform: Platform, run_cli: RunCli) -> None:
    rewards = await platform.start("rewards")
    flags = ("--rewards", rewards.address, "--token", token())
    listed = await run_cli("--output", "json", "rewards", "rules", "list", *flags)
    assert listed.code == 0, listed.err
    rules = {r["ruleId"]: r for r in json.loads(listed.out)}
    assert "vote_cast" in rules

    changed = await run_cli(
        "rewards", "rules", "set", "vote_cast", "--points", "3", "--daily-cap", "4", *flags
    )
    assert changed.code == 0, changed.err
    table = await run_cli("rewards", "rules", "list", *flags)
    row = next(line.split() for line in table.out.splitlines() if line.startswith("vote_cast"))
    assert row[2:4] == ["3", "4"]

    missing = await run_cli("rewards", "rules", "set", "no_such_rule", "--points", "1", *flags)
    assert missing.code in (3, 5)


async def test_rewards_grant_tier_and_points(platform: Platform, run_cli: RunCli) -> None:
    rewards = await platform.start("rewards")
    flags = ("--rewards", rewards.address, "--token", token())
    granted = await run_cli(
        "--output", "json", "rewards", "grant-tier", "--member", "m-42", "--tier", "core",
        "--reason", "community hero", *flags,
    )  # fmt: skip
    assert granted.code == 0, granted.err
    assert json.loads(granted.out)["tier"] == "core"

    points = await run_cli(
        "--output", "json", "rewards", "grant-points", "--member", "m-42", "--amount", "30",
        "--reason", "meetup", *flags,
    )  # fmt: skip
    assert points.code == 0, points.err
    assert json.loads(points.out)["account"]["balance"] == "30"

    overdraw = await run_cli(
        "rewards", "deduct-points", "--member", "m-42", "--amount", "31", "--reason", "x", *flags
    )
    assert overdraw.code == 5
    assert "FAILED_PRECONDITION" in overdraw.err
