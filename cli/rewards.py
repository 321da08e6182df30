"""`cocreate rewards rules list|set`, `rewards grant-tier|revoke-tier` and
`rewards grant-points|deduct-points`: reward rules, tiers and points (admin)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from cli.command import (
    Env,
    Handler,
    add_command,
    add_group,
    collect,
    show_list,
    show_record,
)

REWARDS = "cocreate.rewards.v1.RewardsService."

RULE_COLUMNS = [
    ("rule", "ruleId"),
    ("version", "version"),
    ("points", "points"),
    ("daily cap", "dailyCap"),
    ("enabled", "enabled"),
    ("description", "description"),
]


# --- commands ----------------------------------------------------------------


def cmd_rules_list(env: Env) -> int:
    items = collect(env, REWARDS + "ListRules", {}, "rules", env.args.limit)
    return show_list(env, items, RULE_COLUMNS)


def cmd_rules_set(env: Env) -> int:
    args = env.args
    params: dict[str, Any] = {"ruleId": args.rule_id}
    if args.points is not None:
        params["points"] = str(args.points)
    if args.daily_cap is not None:
        params["dailyCap"] = args.daily_cap
    if args.enabled is not None:
        params["enabled"] = args.enabled
    if args.expected_version is not None:
        params["expectedVersion"] = str(args.expected_version)
    answer = env.mutate(REWARDS + "UpdateRule", params)
    return show_record(env, answer.get("rule", answer))


def cmd_grant_tier(env: Env) -> int:
    answer = env.mutate(
        REWARDS + "GrantTier",
        {
            "memberId": env.args.member,
            "tier": env.args.tier,
            "reason": env.args.reason,
        },
    )
    return show_record(env, answer.get("account", answer))


def cmd_revoke_tier(env: Env) -> int:
    answer = env.mutate(
        REWARDS + "RevokeTier",
        {"memberId": env.args.member, "reason": env.args.reason},
    )
    return show_record(env, answer.get("account", answer))


def _points(method: str) -> Handler:
    def run(env: Env) -> int:
        answer = env.mutate(
            REWARDS + method,
            {
                "memberId": env.args.member,
                "amount": str(env.args.amount),
                "reason": env.args.reason,
            },
        )
        return show_record(env, answer)

    return run


# --- the parser --------------------------------------------------------------


def add_reward_commands(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Adds `rewards …` to cocreate's command parsers."""
    rewards = add_group(commands, "rewards", "reward rules, tiers and points (admin)")
    rules = rewards.add_parser("rules", help="reward rules")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    add_command(rule_commands, "list", cmd_rules_list, "the reward rules", parents).add_argument(
        "--limit", type=int, default=100
    )
    set_rule = add_command(rule_commands, "set", cmd_rules_set, "change a reward rule", parents)
    set_rule.add_argument("rule_id")
    set_rule.add_argument("--points", type=int)
    set_rule.add_argument("--daily-cap", type=int)
    switch = set_rule.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disable", dest="enabled", action="store_const", const=False)
    set_rule.add_argument("--expected-version", type=int)
    grant = add_command(rewards, "grant-tier", cmd_grant_tier, "grant a member a tier", parents)
    grant.add_argument("--member", required=True)
    grant.add_argument("--tier", required=True)
    grant.add_argument("--reason", required=True)
    revoke = add_command(rewards, "revoke-tier", cmd_revoke_tier, "revoke a granted tier", parents)
    revoke.add_argument("--member", required=True)
    revoke.add_argument("--reason", required=True)
    for name, method in (("grant-points", "GrantPoints"), ("deduct-points", "DeductPoints")):
        points = add_command(
            rewards, name, _points(method), f"{name.replace('-', ' ')} to a member", parents
        )
        points.add_argument("--member", required=True)
        points.add_argument("--amount", type=int, required=True)
        points.add_argument("--reason", required=True)
