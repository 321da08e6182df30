"""`cocreate votes policy get|set`, `votes void` and `votes lift-ban`: the tier →
weight policy (admin) and votes of spam accounts (PM)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from cli import errors, output
from cli.command import Env, add_command, add_group, show_record
from cli.errors import CliError

VOTES = "cocreate.votes.v1.VoteService."


def _pairs(items: Sequence[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in items:
        tier, sep, weight = item.partition("=")
        if not sep or not tier or not weight.strip().lstrip("-").isdigit():
            raise CliError(f"{item!r} is not TIER=WEIGHT (for example core=3)", errors.USAGE)
        weights[tier.strip()] = int(weight)
    return weights


# --- commands ----------------------------------------------------------------


def cmd_policy_get(env: Env) -> int:
    policy = env.client.call(VOTES + "GetWeightPolicy").get("policy", {})
    if env.as_json:
        return show_record(env, policy)
    weights = sorted(policy.get("weights", {}).items(), key=lambda kv: (int(kv[1]), kv[0]))
    output.table(
        [{"tier": t, "weight": w} for t, w in weights],
        [("tier", "tier"), ("weight", "weight")],
        env.out,
    )
    env.out.write(
        f"version {policy.get('version', '0')}, lowest tier {policy.get('lowestTier', '')}, "
        f"updated {policy.get('updateTime', '-')} by {policy.get('updatedBy', '-') or '-'}\n"
    )
    return errors.OK


def cmd_policy_set(env: Env) -> int:
    answer = env.mutate(
        VOTES + "UpdateWeightPolicy",
        {
            "weights": {k: str(v) for k, v in _pairs(env.args.weights).items()},
        },
    )
    return show_record(env, answer)


def cmd_votes_void(env: Env) -> int:
    answer = env.mutate(
        VOTES + "VoidMemberVotes",
        {
            "memberId": env.args.member,
            "reason": env.args.reason,
            "ban": env.args.ban,
        },
    )
    return show_record(env, answer)


def cmd_votes_lift_ban(env: Env) -> int:
    answer = env.mutate(
        VOTES + "LiftVoteBan",
        {"memberId": env.args.member, "reason": env.args.reason},
    )
    return show_record(env, answer)


# --- the parser --------------------------------------------------------------


def add_vote_commands(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Adds `votes …` to cocreate's command parsers."""
    votes = add_group(commands, "votes", "weight policy and anti-abuse")
    policy = votes.add_parser("policy", help="the tier → weight policy")
    policies = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    add_command(policies, "get", cmd_policy_get, "show the tier → weight table", parents)
    set_policy = add_command(
        policies, "set", cmd_policy_set, "replace the tier → weight table (admin)", parents
    )
    set_policy.add_argument("weights", nargs="+", metavar="TIER=WEIGHT")
    void = add_command(
        votes, "void", cmd_votes_void, "void every vote of a spam account (PM)", parents
    )
    void.add_argument("--member", required=True)
    void.add_argument("--reason", required=True)
    void.add_argument(
        "--ban", action="store_true", help="also ban the account from casting votes until lifted"
    )
    lift = add_command(
        votes, "lift-ban", cmd_votes_lift_ban, "let a banned account vote again (PM)", parents
    )
    lift.add_argument("--member", required=True)
    lift.add_argument("--reason", required=True)
