"""`cocreate`: the command line for product managers and operators.

The release commands live in cli/release.py. Talks gRPC to the services
(addresses from --ideas/--votes/--rewards or
COCREATE_<SVC>_TARGET), with the token from --token or COCREATE_TOKEN.
Exit codes: see cli/errors.py (0 ok, 1 other, 2 usage, 3 not found,
4 permission/authentication, 5 invalid argument/failed precondition,
6 unavailable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cli import errors, output
from cli.errors import CliError
from cli.export import (
    FORMATS,
    Progress,
    Writable,
    columns,
    flatten,
    row_descriptor,
    unwrap,
    write_csv_pieces,
    write_rows,
)
from cli.release import add_release_commands
from cli.rpc import Client, registry, targets_from
from services.gateway.settings import UPSTREAMS
from services.kit import auth, config

IDEAS = "cocreate.ideas.v1.IdeaService."
VOTES = "cocreate.votes.v1.VoteService."
REWARDS = "cocreate.rewards.v1.RewardsService."
DEAD_LETTERS = "cocreate.ops.v1.DeadLetterService."

ORDERS = ("top", "trending", "newest", "most-discussed")
STATUSES = (
    "open",
    "under-review",
    "planned",
    "in-progress",
    "shipped",
    "declined",
    "merged",
)


@dataclass
class Env:
    """What a command gets: its arguments, a client made on first use, stdout."""

    args: argparse.Namespace
    out: TextIO
    _client: Client | None = field(default=None)

    @property
    def client(self) -> Client:
        if self._client is None:
            flags = {s: getattr(self.args, s, None) for s in UPSTREAMS}
            token = getattr(self.args, "token", None) or os.environ.get("COCREATE_TOKEN")
            self._client = Client(targets_from(flags), token, self.args.timeout)
        return self._client

    @property
    def as_json(self) -> bool:
        return bool(self.args.output == "json")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Env], int]


# --- helpers -----------------------------------------------------------------


def request_id() -> str:
    """Every mutation carries a fresh request id, so a transport retry is not applied twice."""
    return str(uuid.uuid4())


def collect(
    env: Env, method: str, params: dict[str, Any], key: str, limit: int, service: str | None = None
) -> list[Any]:
    """Up to `limit` items of a paginated list, following next_page_token."""
    items: list[Any] = []
    token = ""
    while len(items) < limit:
        page = env.client.call(
            method,
            {**params, "pageSize": min(100, limit - len(items)), "pageToken": token},
            service=service,
        )
        items.extend(page.get(key, []))
        token = page.get("nextPageToken", "")
        if not token:
            break
    if token and len(items) >= limit:
        sys.stderr.write(f"(showing the first {limit}; --limit shows more)\n")
    return items[:limit]


def show_list(env: Env, items: list[Any], table: Sequence[output.Column]) -> int:
    if env.as_json:
        output.as_json(items, env.out)
    elif items:
        output.table(items, table, env.out)
    else:
        env.out.write("(none)\n")
    return errors.OK


def show_record(env: Env, value: Any) -> int:
    if env.as_json:
        output.as_json(value, env.out)
    elif value:
        output.record(value, env.out)
    else:
        env.out.write("ok\n")
    return errors.OK


def _enum(prefix: str, choice: str) -> str:
    return prefix + choice.upper().replace("-", "_")


def _timestamp(text: str) -> str:
    """A date or date-time (ISO 8601, UTC when no offset) in protobuf's JSON form."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{text!r} is not an ISO 8601 date or date-time", errors.USAGE) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def idea_filter(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if args.product:
        found["productId"] = args.product
    if args.status:
        found["statuses"] = [_enum("IDEA_STATUS_", s) for s in args.status]
    if args.tag:
        found["tag"] = args.tag
    if args.author:
        found["authorId"] = args.author
    if getattr(args, "query", None):
        found["query"] = args.query
    if args.include_hidden:
        found["includeHidden"] = True
    return found


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--product", help="product (board) id")
    parser.add_argument(
        "--status", action="append", choices=STATUSES, help="status (repeat for several)"
    )
    parser.add_argument("--tag")
    parser.add_argument("--author", help="author member id")
    parser.add_argument("--include-hidden", action="store_true", help="also hidden ideas (PM)")
    parser.add_argument("--order", choices=ORDERS, default="top")


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


DEAD_LETTER_COLUMNS = [
    ("id", "id"),
    ("consumer", "consumer"),
    ("event", "eventType"),
    ("deliveries", "deliveries"),
    ("parked", "parkedAt"),
    ("error", "error"),
]


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


IDEA_COLUMNS = [
    ("#", "number"),
    ("id", "id"),
    ("status", "status"),
    ("score", "weightedScore"),
    ("voters", "voterCount"),
    ("comments", "commentCount"),
    ("title", "title"),
    ("tags", "tags"),
]


def _short_statuses(items: list[Any]) -> list[Any]:
    for item in items:
        status = item.get("status", "")
        if isinstance(status, str) and status.startswith("IDEA_STATUS_"):
            item["status"] = status.removeprefix("IDEA_STATUS_").lower()
    return items


def cmd_ideas_list(env: Env) -> int:
    params = {
        "filter": idea_filter(env.args),
        "order": _enum("IDEA_ORDER_", env.args.order),
    }
    items = collect(env, IDEAS + "ListIdeas", params, "ideas", env.args.limit)
    if not env.as_json:
        _short_statuses(items)
    return show_list(env, items, IDEA_COLUMNS)


def cmd_ideas_show(env: Env) -> int:
    answer = env.client.call(IDEAS + "GetIdea", {"ideaId": env.args.idea_id})
    return show_record(env, answer.get("idea"))


def cmd_ideas_history(env: Env) -> int:
    items = collect(
        env, IDEAS + "ListIdeaHistory", {"ideaId": env.args.idea_id}, "entries", env.args.limit
    )
    table = [("when", "occurredAt"), ("what", "kind"), ("who", "actorId"), ("note", "note")]
    return show_list(env, items, table)


def _idea_line(idea: dict[str, Any]) -> str:
    status = str(idea.get("status", "")).removeprefix("IDEA_STATUS_").lower()
    hidden = " (hidden)" if idea.get("hidden") else ""
    return (
        f"#{idea.get('number', '?')} {idea.get('id', '')} {status}{hidden}: {idea.get('title', '')}"
    )


def show_idea_change(env: Env, answer: dict[str, Any]) -> int:
    if env.as_json:
        output.as_json(answer, env.out)
        return errors.OK
    for key in ("idea", "source", "target"):
        if isinstance(answer.get(key), dict):
            env.out.write(f"{key + ':':<7} {_idea_line(answer[key])}\n")
    return errors.OK


def cmd_ideas_status(env: Env) -> int:
    answer = env.client.call(
        IDEAS + "ChangeIdeaStatus",
        {
            "ideaId": env.args.idea_id,
            "status": _enum("IDEA_STATUS_", env.args.status),
            "note": env.args.note or "",
            "requestId": request_id(),
        },
    )
    return show_idea_change(env, answer)


def cmd_ideas_merge(env: Env) -> int:
    answer = env.client.call(
        IDEAS + "MergeIdeas",
        {
            "sourceIdeaId": env.args.source,
            "targetIdeaId": env.args.target,
            "note": env.args.note or "",
            "requestId": request_id(),
        },
    )
    return show_idea_change(env, answer)


def cmd_ideas_hide(env: Env) -> int:
    answer = env.client.call(
        IDEAS + "HideIdea",
        {
            "ideaId": env.args.idea_id,
            "reason": env.args.reason,
            "spam": env.args.spam,
            "requestId": request_id(),
        },
    )
    return show_idea_change(env, answer)


def cmd_export(env: Env) -> int:
    args = env.args
    params: dict[str, Any] = {
        "filter": idea_filter(args),
        "order": _enum("IDEA_ORDER_", args.order),
    }
    if args.created_after:
        params["createdAfter"] = _timestamp(args.created_after)
    if args.created_before:
        params["createdBefore"] = _timestamp(args.created_before)
    if args.limit:
        params["limit"] = args.limit
    method = registry().find(IDEAS + "ExportIdeas")
    if method is None:
        raise CliError("this build has no ExportIdeas method", errors.OTHER)

    def write(out: Writable) -> int:
        if args.format == "csv":
            # Postgres renders the CSV: a message per row would cost ~50 µs of
            # Python per idea on each side.
            params["format"] = "EXPORT_FORMAT_CSV"
            pieces = env.client.stream(IDEAS + "ExportIdeas", params)
            return write_csv_pieces(pieces, out, Progress(unit="bytes"))
        header = columns(row_descriptor(method.response_class.DESCRIPTOR))
        rows = (
            flatten(row)
            for batch in env.client.stream(IDEAS + "ExportIdeas", params)
            for row in unwrap(batch)
        )
        return write_rows(rows, header, args.format, out, Progress())

    if not args.out:
        write(env.out)
        return errors.OK
    # Written next to FILE and renamed when complete: a failed export leaves no
    # truncated file that looks like a finished one.
    target = Path(args.out)
    partial = target.with_name(target.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as out:
            count = write(out)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    sys.stderr.write(f"exported {count:,} ideas to {target}\n")
    return errors.OK


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
        f"updated {policy.get('updatedAt', '-')} by {policy.get('updatedBy', '-') or '-'}\n"
    )
    return errors.OK


def _pairs(items: Sequence[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in items:
        tier, sep, weight = item.partition("=")
        if not sep or not tier or not weight.strip().lstrip("-").isdigit():
            raise CliError(f"{item!r} is not TIER=WEIGHT (for example core=3)", errors.USAGE)
        weights[tier.strip()] = int(weight)
    return weights


def cmd_policy_set(env: Env) -> int:
    answer = env.client.call(
        VOTES + "UpdateWeightPolicy",
        {
            "weights": {k: str(v) for k, v in _pairs(env.args.weights).items()},
            "requestId": request_id(),
        },
    )
    return show_record(env, answer)


def cmd_votes_void(env: Env) -> int:
    answer = env.client.call(
        VOTES + "VoidMemberVotes",
        {
            "memberId": env.args.member,
            "reason": env.args.reason,
            "ban": env.args.ban,
            "requestId": request_id(),
        },
    )
    return show_record(env, answer)


def cmd_votes_lift_ban(env: Env) -> int:
    answer = env.client.call(
        VOTES + "LiftVoteBan",
        {"memberId": env.args.member, "reason": env.args.reason, "requestId": request_id()},
    )
    return show_record(env, answer)


RULE_COLUMNS = [
    ("rule", "ruleId"),
    ("version", "version"),
    ("points", "points"),
    ("daily cap", "dailyCap"),
    ("enabled", "enabled"),
    ("description", "description"),
]


def cmd_rules_list(env: Env) -> int:
    items = collect(env, REWARDS + "ListRules", {}, "rules", env.args.limit)
    return show_list(env, items, RULE_COLUMNS)


def cmd_rules_set(env: Env) -> int:
    args = env.args
    params: dict[str, Any] = {"ruleId": args.rule_id, "requestId": request_id()}
    if args.points is not None:
        params["points"] = str(args.points)
    if args.daily_cap is not None:
        params["dailyCap"] = args.daily_cap
    if args.enabled is not None:
        params["enabled"] = args.enabled
    if args.expected_version is not None:
        params["expectedVersion"] = str(args.expected_version)
    answer = env.client.call(REWARDS + "UpdateRule", params)
    return show_record(env, answer.get("rule", answer))


def cmd_grant_tier(env: Env) -> int:
    answer = env.client.call(
        REWARDS + "GrantTier",
        {
            "memberId": env.args.member,
            "tier": env.args.tier,
            "reason": env.args.reason,
            "requestId": request_id(),
        },
    )
    return show_record(env, answer.get("account", answer))


def cmd_revoke_tier(env: Env) -> int:
    answer = env.client.call(
        REWARDS + "RevokeTier",
        {"memberId": env.args.member, "reason": env.args.reason, "requestId": request_id()},
    )
    return show_record(env, answer.get("account", answer))


def _points(method: str) -> Handler:
    def run(env: Env) -> int:
        answer = env.client.call(
            REWARDS + method,
            {
                "memberId": env.args.member,
                "amount": str(env.args.amount),
                "reason": env.args.reason,
                "requestId": request_id(),
            },
        )
        return show_record(env, answer)

    return run


# --- the parser --------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The same options on the top level and on every command, so they may come
    before or after the command name."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    for service in UPSTREAMS:
        parser.add_argument(
            f"--{service}",
            metavar="HOST:PORT",
            default=default(None),
            help=f"the {service} service (default: COCREATE_{service.upper()}_TARGET or its port)",
        )
    parser.add_argument(
        "--token", default=default(None), help="bearer JWT (default: COCREATE_TOKEN)"
    )
    parser.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per call (default 30)"
    )
    parser.add_argument(
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="table for people, json for scripts",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocreate",
        description="Triage, export and administer cocreate over gRPC.",
        epilog="exit codes: 0 ok, 1 other error, 2 usage, 3 not found, "
        "4 permission or authentication, 5 invalid argument or failed precondition, "
        "6 service unavailable",
    )
    _connection_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        group: Any, name: str, handler: Handler | None, help_text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=help_text, description=help_text, parents=[common]
        )
        if handler is not None:
            sub.set_defaults(handler=handler)
        return sub

    def group(parent: Any, name: str, help_text: str) -> Any:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

    token = command(commands, "token", cmd_token, "mint a development JWT")
    token.add_argument("--member", required=True, help="member id (the token's subject)")
    token.add_argument("--role", choices=[r.value for r in auth.Role], default="member")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds (default 12 h)")

    call = command(commands, "call", cmd_call, "call any method with JSON params; prints JSON")
    call.add_argument("method", help="e.g. cocreate.ideas.v1.IdeaService.GetIdea")
    call.add_argument("params", nargs="?", help='request in JSON mapping, e.g. \'{"ideaId": "…"}\'')
    call.add_argument("--service", choices=UPSTREAMS, help="for cocreate.ops.v1 methods")

    export = command(
        commands, "export", cmd_export, "stream the top ideas as CSV, JSON or Markdown"
    )
    _add_filters(export)
    export.add_argument("--query", help="text in the title or body")
    export.add_argument("--created-after", metavar="ISO-TIME")
    export.add_argument("--created-before", metavar="ISO-TIME")
    export.add_argument("--limit", type=int, default=0, help="at most this many rows (0: all)")
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    ideas = group(commands, "ideas", "list, search and triage ideas")
    listing = command(ideas, "list", cmd_ideas_list, "ideas as a table")
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50)
    search = command(ideas, "search", cmd_ideas_list, "ideas whose title or body has QUERY")
    search.add_argument("query")
    _add_filters(search)
    search.add_argument("--limit", type=int, default=50)
    command(ideas, "show", cmd_ideas_show, "one idea").add_argument("idea_id")
    history = command(ideas, "history", cmd_ideas_history, "what happened to an idea")
    history.add_argument("idea_id")
    history.add_argument("--limit", type=int, default=100)
    status = command(ideas, "status", cmd_ideas_status, "change an idea's status (PM)")
    status.add_argument("idea_id")
    status.add_argument("status", choices=STATUSES[:-1])
    status.add_argument("--note")
    merge = command(ideas, "merge", cmd_ideas_merge, "merge a duplicate into a target (PM)")
    merge.add_argument("source", help="the duplicate")
    merge.add_argument("target", help="the idea it duplicates")
    merge.add_argument("--note")
    hide = command(ideas, "hide", cmd_ideas_hide, "hide an idea from members (PM)")
    hide.add_argument("idea_id")
    hide.add_argument("--reason", required=True)
    hide.add_argument("--spam", action="store_true", help="it is spam (reverses rewards)")

    votes = group(commands, "votes", "weight policy and anti-abuse")
    policy = votes.add_parser("policy", help="the tier → weight policy")
    policies = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    command(policies, "get", cmd_policy_get, "show the tier → weight table")
    set_policy = command(policies, "set", cmd_policy_set, "replace the tier → weight table (admin)")
    set_policy.add_argument("weights", nargs="+", metavar="TIER=WEIGHT")
    void = command(votes, "void", cmd_votes_void, "void every vote of a spam account (PM)")
    void.add_argument("--member", required=True)
    void.add_argument("--reason", required=True)
    void.add_argument(
        "--ban", action="store_true", help="also ban the account from casting votes until lifted"
    )
    lift = command(votes, "lift-ban", cmd_votes_lift_ban, "let a banned account vote again (PM)")
    lift.add_argument("--member", required=True)
    lift.add_argument("--reason", required=True)

    rewards = group(commands, "rewards", "reward rules, tiers and points (admin)")
    rules = rewards.add_parser("rules", help="reward rules")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    command(rule_commands, "list", cmd_rules_list, "the reward rules").add_argument(
        "--limit", type=int, default=100
    )
    set_rule = command(rule_commands, "set", cmd_rules_set, "change a reward rule")
    set_rule.add_argument("rule_id")
    set_rule.add_argument("--points", type=int)
    set_rule.add_argument("--daily-cap", type=int)
    switch = set_rule.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disable", dest="enabled", action="store_const", const=False)
    set_rule.add_argument("--expected-version", type=int)
    grant = command(rewards, "grant-tier", cmd_grant_tier, "grant a member a tier")
    grant.add_argument("--member", required=True)
    grant.add_argument("--tier", required=True)
    grant.add_argument("--reason", required=True)
    revoke = command(rewards, "revoke-tier", cmd_revoke_tier, "revoke a granted tier")
    revoke.add_argument("--member", required=True)
    revoke.add_argument("--reason", required=True)
    for name, method in (("grant-points", "GrantPoints"), ("deduct-points", "DeductPoints")):
        points = command(rewards, name, _points(method), f"{name.replace('-', ' ')} to a member")
        points.add_argument("--member", required=True)
        points.add_argument("--amount", type=int, required=True)
        points.add_argument("--reason", required=True)

    dead = group(commands, "deadletters", "events a consumer gave up on (admin)")
    dead_list = command(dead, "list", cmd_deadletters_list, "the parked events of a service")
    dead_list.add_argument("--service", choices=UPSTREAMS, required=True)
    dead_list.add_argument("--limit", type=int, default=100)
    replay = command(dead, "replay", cmd_deadletters_replay, "run a parked event again")
    replay.add_argument("--service", choices=UPSTREAMS, required=True)
    replay.add_argument("id", type=int)

    add_release_commands(commands, parents=[common])
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help is 0, a usage error 2
        return int(exc.code or 0)
    env = Env(args=args, out=out if out is not None else sys.stdout)
    try:
        handler: Handler = args.handler
        return handler(env)
    except CliError as exc:
        sys.stderr.write(f"cocreate: {exc.message}\n")
        return exc.exit_code
    except BrokenPipeError:  # `cocreate export | head`
        return errors.OK
    except KeyboardInterrupt:
        sys.stderr.write("cocreate: interrupted\n")
        return 130
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main())
