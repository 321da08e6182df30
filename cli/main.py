"""`cocreate`: the command line for product managers and operators.

This module builds the parser from the areas' commands and runs the one
asked for; each area keeps its commands next to their arguments:
cli/admin.py (token, call, deadletters), cli/ideas.py (export, ideas),
cli/votes.py, cli/rewards.py and cli/release.py. Talks gRPC to the services
(addresses from --ideas/--votes/--rewards or
COCREATE_<SVC>_TARGET), with the token from --token or COCREATE_TOKEN.
Exit codes: see cli/errors.py (0 ok, 1 other, 2 usage, 3 not found,
4 permission/authentication, 5 invalid argument/failed precondition,
6 unavailable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from cli import errors
from cli.admin import add_dead_letter_commands, add_token_and_call_commands
from cli.command import Env, Handler
from cli.errors import CliError
from cli.ideas import add_idea_commands
from cli.release import add_release_commands
from cli.rewards import add_reward_commands
from cli.votes import add_vote_commands
from services.gateway.settings import UPSTREAMS


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
    add_token_and_call_commands(commands, parents=[common])
    add_idea_commands(commands, parents=[common])
    add_vote_commands(commands, parents=[common])
    add_reward_commands(commands, parents=[common])
    add_dead_letter_commands(commands, parents=[common])
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
