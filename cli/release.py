"""`cocreate release plan|cut|notes|status`: the weekly release, safe to run
from a scheduled job.

Every command is non-interactive and idempotent: `plan` creates the iteration
only if it is missing and planning an idea again changes nothing; `cut` sends
a request id derived from the iteration and the version, and the service
returns the same release for a second cut of the same version. Exit codes as
for every command (cli/errors.py): 0 ok (also when there was nothing left to
do), 3 no such iteration or release, 4 not allowed, 5 refused (for example
the iteration was released under another version), 6 service unreachable.

An iteration is given by id, or by name (2026-W48) with --product.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from cli import errors, output
from cli.errors import CliError

if TYPE_CHECKING:
    from cli.command import Env

RELEASES = "cocreate.ideas.v1.ReleaseService."
NOTE_FORMATS = {"md": "RELEASE_NOTES_FORMAT_MARKDOWN", "json": "RELEASE_NOTES_FORMAT_JSON"}

ITERATION_IDEA_COLUMNS = [
    ("#", "number"),
    ("id", "ideaId"),
    ("status", "status"),
    ("done", "done"),
    ("outcome", "outcome"),
    ("score", "weightedScore"),
    ("voters", "voterCount"),
    ("author", "authorId"),
    ("title", "title"),
]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _pages(env: Env, method: str, params: dict[str, Any], key: str) -> list[Any]:
    items: list[Any] = []
    token = ""
    while True:
        page = env.client.call(RELEASES + method, {**params, "pageSize": 100, "pageToken": token})
        items.extend(page.get(key, []))
        token = page.get("nextPageToken", "")
        if not token:
            return items


def find_iteration(env: Env, product: str | None, iteration: str) -> dict[str, Any] | None:
    """The iteration by id, or by name within the product; None when the name is unknown."""
    if _is_uuid(iteration):
        answer = env.client.call(RELEASES + "GetIteration", {"iterationId": iteration})
        found: dict[str, Any] = answer["iteration"]
        return found
    if not product:
        raise CliError("an iteration given by name needs --product", errors.USAGE)
    for item in _pages(env, "ListIterations", {"productId": product}, "iterations"):
        if str(item.get("name", "")).lower() == iteration.lower():
            return dict(item)
    return None


def require_iteration(env: Env, product: str | None, iteration: str) -> dict[str, Any]:
    found = find_iteration(env, product, iteration)
    if found is None:
        raise CliError(f"product {product} has no iteration named {iteration!r}", errors.NOT_FOUND)
    return found


def _short(items: list[Any]) -> list[Any]:
    for item in items:
        for key, prefix in (
            ("status", "IDEA_STATUS_"),
            ("outcome", "ITERATION_IDEA_OUTCOME_"),
            ("state", "ITERATION_STATE_"),
        ):
            value = item.get(key)
            if isinstance(value, str) and value.startswith(prefix):
                item[key] = value.removeprefix(prefix).lower().replace("_", "-")
    return items


def _show_iteration(env: Env, iteration: dict[str, Any]) -> int:
    ideas = _pages(env, "ListIterationIdeas", {"iterationId": iteration["id"]}, "ideas")
    if env.as_json:
        output.as_json({"iteration": iteration, "ideas": ideas}, env.out)
        return errors.OK
    _short([iteration])
    env.out.write(
        f"iteration {iteration.get('name')} ({iteration.get('id')}): {iteration.get('state')}, "
        f"{iteration.get('startDate')} – {iteration.get('endDate')}, "
        f"{iteration.get('ideaCount', '0')} ideas, {iteration.get('doneCount', '0')} done"
        + (f", release {iteration['releaseId']}" if iteration.get("releaseId") else "")
        + "\n"
    )
    if ideas:
        output.table(_short(ideas), ITERATION_IDEA_COLUMNS, env.out)
    else:
        env.out.write("(no ideas planned)\n")
    return errors.OK


# --- commands ----------------------------------------------------------------


def cmd_plan(env: Env) -> int:
    args = env.args
    iteration = find_iteration(env, args.product, args.iteration)
    if iteration is None:
        params: dict[str, Any] = {"productId": args.product, "name": args.iteration}
        if args.start:
            params["startDate"] = args.start
        if args.end:
            params["endDate"] = args.end
        iteration = env.mutate(RELEASES + "CreateIteration", params)["iteration"]
        sys.stderr.write(f"created iteration {args.iteration}\n")
    iteration_id = iteration["id"]
    for idea_id in args.unplan or []:
        try:
            env.mutate(RELEASES + "UnplanIdea", {"iterationId": iteration_id, "ideaId": idea_id})
        except CliError as exc:
            if exc.exit_code != errors.NOT_FOUND:
                raise  # not planned there: already done
    for idea_id in [*args.idea_ids, *(args.done or [])]:
        env.mutate(RELEASES + "PlanIdea", {"iterationId": iteration_id, "ideaId": idea_id})
    for idea_id in args.done or []:
        env.mutate(RELEASES + "MarkIdeaDone", {"iterationId": iteration_id, "ideaId": idea_id})
    if args.freeze:
        env.mutate(RELEASES + "FreezeIteration", {"iterationId": iteration_id})
    refreshed = env.client.call(RELEASES + "GetIteration", {"iterationId": iteration_id})
    return _show_iteration(env, refreshed["iteration"])


def cmd_status(env: Env) -> int:
    return _show_iteration(env, require_iteration(env, env.args.product, env.args.iteration))


def cmd_cut(env: Env) -> int:
    args = env.args
    iteration = require_iteration(env, args.product, args.iteration)
    answer = env.client.call(
        RELEASES + "CutRelease",
        {
            "iterationId": iteration["id"],
            "version": args.version,
            # The same cut always carries the same request id.
            "requestId": f"cut:{iteration['id']}:{args.version.strip().lower()}"[:128],
        },
    )
    release = answer["release"]
    if env.as_json:
        output.as_json(release, env.out)
        return errors.OK
    shipped = release.get("shippedIdeas", [])
    rolled = release.get("rolledOverIdeaIds", [])
    env.out.write(
        f"release {release.get('version')} ({release.get('id')}) of iteration "
        f"{release.get('iterationName')}: {len(shipped)} shipped, {len(rolled)} rolled over"
        + (f" to {release['nextIterationId']}" if release.get("nextIterationId") else "")
        + "\n"
    )
    if shipped:
        output.table(
            shipped,
            [
                ("#", "number"),
                ("id", "ideaId"),
                ("score", "weightedScore"),
                ("voters", "voterCount"),
                ("author", "authorId"),
                ("title", "title"),
            ],
            env.out,
        )
    for idea_id in rolled:
        env.out.write(f"rolled over: {idea_id}\n")
    return errors.OK


def cmd_notes(env: Env) -> int:
    args = env.args
    params: dict[str, Any] = {"format": NOTE_FORMATS[args.format]}
    if args.release:
        params["releaseId"] = args.release
    elif args.iteration:
        params["iterationId"] = require_iteration(env, args.product, args.iteration)["id"]
    else:
        raise CliError("give --release, or --iteration (with --product for a name)", errors.USAGE)
    content = str(env.client.call(RELEASES + "GetReleaseNotes", params).get("content", ""))
    if not content.endswith("\n"):
        content += "\n"
    with ExitStack() as stack:
        out = env.out
        if args.out:
            out = stack.enter_context(open(args.out, "w", encoding="utf-8"))
        out.write(content)
    return errors.OK


# --- the parser --------------------------------------------------------------


def add_release_commands(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Adds `release plan|cut|notes|status` to cocreate's command parsers;
    `parents` carries the connection options every command accepts."""
    release: argparse.ArgumentParser = subparsers.add_parser(
        "release",
        help="weekly iterations and the release cut (PM or release tooling)",
        description="Plan the weekly iteration, cut the release, publish its notes.",
    )
    commands = release.add_subparsers(dest="release_command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[Env], int], help_text: str) -> Any:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, parents=list(parents)
        )
        sub.set_defaults(handler=handler)
        return sub

    def iteration_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
        parser.add_argument("--product", help="product id (needed when --iteration is a name)")
        parser.add_argument(
            "--iteration",
            required=required,
            metavar="ID|NAME",
            help="iteration id, or its name such as 2026-W48",
        )

    plan = command(
        "plan",
        cmd_plan,
        "create the iteration if missing, plan ideas into it, mark ideas done",
    )
    iteration_options(plan)
    plan.add_argument("idea_ids", nargs="*", metavar="IDEA_ID", help="ideas to plan")
    plan.add_argument("--done", action="append", metavar="IDEA_ID", help="plan and mark done")
    plan.add_argument("--unplan", action="append", metavar="IDEA_ID", help="take out")
    plan.add_argument("--start", metavar="YYYY-MM-DD", help="start date of a custom iteration")
    plan.add_argument("--end", metavar="YYYY-MM-DD", help="end date of a custom iteration")
    plan.add_argument("--freeze", action="store_true", help="freeze the iteration's scope")

    cut = command("cut", cmd_cut, "ship the done ideas, roll the rest over, publish the release")
    iteration_options(cut)
    cut.add_argument("--version", required=True, help='for example "OS 3.0.26.11.27"')

    notes = command("notes", cmd_notes, "the release notes as Markdown or JSON")
    notes.add_argument("--release", metavar="ID", help="release id")
    iteration_options(notes, required=False)
    notes.add_argument("--format", choices=sorted(NOTE_FORMATS), default="md")
    notes.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    status = command("status", cmd_status, "an iteration's state and ideas with their scores")
    iteration_options(status)
    return release
