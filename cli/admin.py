"""`cocreate token`, `cocreate call` and `cocreate deadletters list|replay`: a
development token, any method by name, and the events a consumer gave up on
(admin)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from cli import errors, output
from cli.command import Env, add_command, add_group, collect, show_list, show_record
from cli.errors import CliError
from services.gateway.settings import UPSTREAMS
from services.kit import auth, config

DEAD_LETTERS = "cocreate.ops.v1.DeadLetterService."

DEAD_LETTER_COLUMNS = [
    ("id", "id"),
    ("consumer", "consumer"),
    ("event", "eventType"),
    ("deliveries", "deliveries"),
    ("parked", "parkTime"),
    ("error", "error"),
]


# --- commands ----------------------------------------------------------------


def cmd_token(env: Env) -> int:
    try:
        development = config.is_development()
        policy = config.token_policy(os.environ)
    except config.ConfigError as exc:
        raise CliError(str(exc), errors.USAGE) from None
    if not development:
        raise CliError(
            "refusing to mint a token outside development (COCREATE_ENV is not 'development'; "
            "tokens for a real deployment come from its identity provider)",
            errors.DENIED,
        )
    configured = os.environ.get("COCREATE_JWT_SECRET")
    if configured and configured != config.DEV_JWT_SECRET:
        raise CliError(
            "refusing to mint a token: COCREATE_JWT_SECRET is not the development secret "
            "(tokens for a real deployment come from its identity provider)",
            errors.DENIED,
        )
    if env.args.ttl <= 0:
        raise CliError("--ttl must be a positive number of seconds", errors.USAGE)
    if policy.max_ttl_seconds and env.args.ttl > policy.max_ttl_seconds:
        raise CliError(
            f"--ttl must be at most COCREATE_JWT_MAX_TTL_SECONDS={policy.max_ttl_seconds}",
            errors.USAGE,
        )
    token = auth.mint_token(
        env.args.member,
        env.args.role,
        config.DEV_JWT_SECRET,
        env.args.ttl,
        issuer=policy.issuer,
        audience=policy.audience,
    )
    env.out.write(token + "\n")
    return errors.OK


def cmd_call(env: Env) -> int:
    try:
        params = json.loads(env.args.params) if env.args.params else {}
    except json.JSONDecodeError as exc:
        raise CliError(f"PARAMS is not JSON: {exc}", errors.USAGE) from None
    if not isinstance(params, dict):
        raise CliError("PARAMS must be a JSON object", errors.USAGE)
    if env.client.is_streaming(env.args.method):
        from cli.rpc import to_json

        for item in env.client.stream(env.args.method, params, service=env.args.service):
            env.out.write(json.dumps(to_json(item), ensure_ascii=False) + "\n")
        return errors.OK
    output.as_json(env.client.call(env.args.method, params, service=env.args.service), env.out)
    return errors.OK


def cmd_deadletters_list(env: Env) -> int:
    items = collect(
        env, DEAD_LETTERS + "ListDeadLetters", {}, "deadLetters", env.args.limit, env.args.service
    )
    return show_list(env, items, DEAD_LETTER_COLUMNS)


def cmd_deadletters_replay(env: Env) -> int:
    answer = env.client.call(
        DEAD_LETTERS + "ReplayDeadLetter", {"id": str(env.args.id)}, service=env.args.service
    )
    return show_record(env, answer.get("deadLetter"))


# --- the parser --------------------------------------------------------------
# Two entry points, so `cocreate --help` lists token and call first and
# deadletters after the areas, as it always has.


def add_token_and_call_commands(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Adds `token` and `call` to cocreate's command parsers."""
    token = add_command(commands, "token", cmd_token, "mint a development JWT", parents)
    token.add_argument("--member", required=True, help="member id (the token's subject)")
    token.add_argument("--role", choices=[r.value for r in auth.Role], default="member")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds (default 12 h)")

    call = add_command(
        commands, "call", cmd_call, "call any method with JSON params; prints JSON", parents
    )
    call.add_argument("method", help="e.g. cocreate.ideas.v1.IdeaService.GetIdea")
    call.add_argument("params", nargs="?", help='request in JSON mapping, e.g. \'{"ideaId": "…"}\'')
    call.add_argument("--service", choices=UPSTREAMS, help="for cocreate.ops.v1 methods")


def add_dead_letter_commands(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Adds `deadletters …` to cocreate's command parsers."""
    dead = add_group(commands, "deadletters", "events a consumer gave up on (admin)")
    dead_list = add_command(
        dead, "list", cmd_deadletters_list, "the parked events of a service", parents
    )
    dead_list.add_argument("--service", choices=UPSTREAMS, required=True)
    dead_list.add_argument("--limit", type=int, default=100)
    replay = add_command(
        dead, "replay", cmd_deadletters_replay, "run a parked event again", parents
    )
    replay.add_argument("--service", choices=UPSTREAMS, required=True)
    replay.add_argument("id", type=int)
