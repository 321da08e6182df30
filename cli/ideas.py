"""`cocreate export` and `cocreate ideas list|search|show|history|status|merge|hide`:
finding ideas, streaming the top ones out, and triage (PM)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli import errors, output
from cli.command import (
    Env,
    add_command,
    add_group,
    collect,
    enum_value,
    show_list,
    show_record,
)
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
from cli.rpc import registry

IDEAS = "cocreate.ideas.v1.IdeaService."

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
        found["statuses"] = [enum_value("IDEA_STATUS_", s) for s in args.status]
    if args.tag:
        found["tag"] = args.tag
    if args.author:
        found["authorId"] = args.author
    if getattr(args, "query", None):
        found["query"] = args.query
    if args.include_hidden:
        found["includeHidden"] = True
    return found


def _short_statuses(items: list[Any]) -> list[Any]:
    for item in items:
        status = item.get("status", "")
        if isinstance(status, str) and status.startswith("IDEA_STATUS_"):
            item["status"] = status.removeprefix("IDEA_STATUS_").lower()
    return items


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


# --- commands ----------------------------------------------------------------


def cmd_ideas_list(env: Env) -> int:
    params = {
        "filter": idea_filter(env.args),
        "order": enum_value("IDEA_ORDER_", env.args.order),
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
    table = [("when", "eventTime"), ("what", "kind"), ("who", "actorId"), ("note", "note")]
    return show_list(env, items, table)


def cmd_ideas_status(env: Env) -> int:
    answer = env.mutate(
        IDEAS + "ChangeIdeaStatus",
        {
            "ideaId": env.args.idea_id,
            "status": enum_value("IDEA_STATUS_", env.args.status),
            "note": env.args.note or "",
        },
    )
    return show_idea_change(env, answer)


def cmd_ideas_merge(env: Env) -> int:
    answer = env.mutate(
        IDEAS + "MergeIdeas",
        {
            "sourceIdeaId": env.args.source,
            "targetIdeaId": env.args.target,
            "note": env.args.note or "",
        },
    )
    return show_idea_change(env, answer)


def cmd_ideas_hide(env: Env) -> int:
    answer = env.mutate(
        IDEAS + "HideIdea",
        {
            "ideaId": env.args.idea_id,
            "reason": env.args.reason,
            "spam": env.args.spam,
        },
    )
    return show_idea_change(env, answer)


def cmd_export(env: Env) -> int:
    args = env.args
    params: dict[str, Any] = {
        "filter": idea_filter(args),
        "order": enum_value("IDEA_ORDER_", args.order),
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


# --- the parser --------------------------------------------------------------


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--product", help="product (board) id")
    parser.add_argument(
        "--status", action="append", choices=STATUSES, help="status (repeat for several)"
    )
    parser.add_argument("--tag")
    parser.add_argument("--author", help="author member id")
    parser.add_argument("--include-hidden", action="store_true", help="also hidden ideas (PM)")
    parser.add_argument("--order", choices=ORDERS, default="top")


def add_idea_commands(commands: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Adds `export` and `ideas …` to cocreate's command parsers."""
    export = add_command(
        commands, "export", cmd_export, "stream the top ideas as CSV, JSON or Markdown", parents
    )
    _add_filters(export)
    export.add_argument("--query", help="text in the title or body")
    export.add_argument("--created-after", metavar="ISO-TIME")
    export.add_argument("--created-before", metavar="ISO-TIME")
    export.add_argument("--limit", type=int, default=0, help="at most this many rows (0: all)")
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    ideas = add_group(commands, "ideas", "list, search and triage ideas")
    listing = add_command(ideas, "list", cmd_ideas_list, "ideas as a table", parents)
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=50)
    search = add_command(
        ideas, "search", cmd_ideas_list, "ideas whose title or body has QUERY", parents
    )
    search.add_argument("query")
    _add_filters(search)
    search.add_argument("--limit", type=int, default=50)
    add_command(ideas, "show", cmd_ideas_show, "one idea", parents).add_argument("idea_id")
    history = add_command(ideas, "history", cmd_ideas_history, "what happened to an idea", parents)
    history.add_argument("idea_id")
    history.add_argument("--limit", type=int, default=100)
    status = add_command(ideas, "status", cmd_ideas_status, "change an idea's status (PM)", parents)
    status.add_argument("idea_id")
    status.add_argument("status", choices=STATUSES[:-1])
    status.add_argument("--note")
    merge = add_command(
        ideas, "merge", cmd_ideas_merge, "merge a duplicate into a target (PM)", parents
    )
    merge.add_argument("source", help="the duplicate")
    merge.add_argument("target", help="the idea it duplicates")
    merge.add_argument("--note")
    hide = add_command(ideas, "hide", cmd_ideas_hide, "hide an idea from members (PM)", parents)
    hide.add_argument("idea_id")
    hide.add_argument("--reason", required=True)
    hide.add_argument("--spam", action="store_true", help="it is spam (reverses rewards)")
