"""What every `cocreate` command shares: the Env it runs with, how it is added
to the parser, fresh request ids, paging through a list, and showing the
answer as a table, a record or JSON."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from cli import errors, output
from cli.rpc import Client, targets_from
from services.gateway.settings import UPSTREAMS


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

    def mutate(self, method: str, params: dict[str, Any]) -> Any:
        """Call a mutation with a fresh request id (see `request_id`)."""
        return self.client.call(method, {**params, "requestId": request_id()})

    @property
    def as_json(self) -> bool:
        return bool(self.args.output == "json")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


Handler = Callable[[Env], int]


# --- the parser --------------------------------------------------------------


def add_command(
    group: Any,
    name: str,
    handler: Handler | None,
    help_text: str,
    parents: Sequence[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """A command in `group`; `parents` carries the connection options every
    command accepts."""
    sub: argparse.ArgumentParser = group.add_parser(
        name, help=help_text, description=help_text, parents=list(parents)
    )
    if handler is not None:
        sub.set_defaults(handler=handler)
    return sub


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """A command that only groups others (`cocreate ideas …`); its subparsers."""
    sub = parent.add_parser(name, help=help_text, description=help_text)
    return sub.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


# --- running -----------------------------------------------------------------


def request_id() -> str:
    """Every mutation carries a fresh request id, so a transport retry is not applied twice."""
    return str(uuid.uuid4())


def enum_value(prefix: str, choice: str) -> str:
    """A command-line choice (under-review) as a protobuf enum value name."""
    return prefix + choice.upper().replace("-", "_")


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
