"""`cocreate release plan|cut|notes|status` against the real ideas service
with its ReleaseService: exit codes, idempotent re-runs, notes to a file."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb

import cli.main
from cli.release import add_release_commands
from services.kit import auth, config
from tests.releases.helpers import ADMIN, IdeasClients, new_product, start_ideas, submit
from tests.support import Platform

_original_build_parser = cli.main.build_parser


def _build_parser_with_release() -> argparse.ArgumentParser:
    """cocreate's parser with the release commands, as cli/main.py wires them."""
    parser = _original_build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "release" not in commands.choices:
        common = argparse.ArgumentParser(add_help=False)
        cli.main._connection_options(common, defaults=False)
        add_release_commands(commands, parents=[common])
    return parser


@pytest.fixture(autouse=True)
def release_commands(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cli.main, "build_parser", _build_parser_with_release)
    yield


def token(member: str, role: str) -> str:
    return auth.mint_token(member, role, config.DEV_JWT_SECRET)


class Cli:
    def __init__(self, ideas: IdeasClients, capsys: pytest.CaptureFixture[str]) -> None:
        self._address = ideas.service.address
        self._capsys = capsys

    async def __call__(self, *argv: str, role: str = "service") -> tuple[int, str, str]:
        self._capsys.readouterr()
        out = io.StringIO()
        flags = ["--ideas", self._address, "--token", token("release-bot", role)]
        code = await asyncio.to_thread(cli.main.main, [*argv, *flags], out)
        return code, out.getvalue(), self._capsys.readouterr().err


@pytest.fixture
async def ideas(platform: Platform) -> IdeasClients:
    return await start_ideas(platform)


async def test_plan_cut_and_notes_from_a_weekly_job(
    ideas: IdeasClients, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = Cli(ideas, capsys)
    product = await new_product(ideas)
    shipped = await submit(ideas, product, "author-1", "Dark mode everywhere")
    later = await submit(ideas, product, "author-2", "Battery saver schedule")
    where = ("--product", product, "--iteration", "2026-W48")

    code, out, err = await run("release", "plan", *where, later, "--done", shipped)
    assert code == 0, err
    assert "created iteration 2026-W48" in err
    assert "2 ideas, 1 done" in out
    again = await run("release", "plan", *where, later, "--done", shipped)
    assert again[0] == 0 and "created" not in again[2]
    assert "2 ideas, 1 done" in again[1]

    code, out, err = await run("--output", "json", "release", "status", *where)
    assert code == 0, err
    listed = json.loads(out)
    assert listed["iteration"]["state"] == "ITERATION_STATE_PLANNING"
    assert {i["ideaId"]: i["done"] for i in listed["ideas"]} == {shipped: True, later: False}

    code, out, err = await run("release", "cut", *where, "--version", "OS 3.0.26.11.27")
    assert code == 0, err
    assert "1 shipped, 1 rolled over" in out and f"rolled over: {later}" in out
    rerun = await run("release", "cut", *where, "--version", "OS 3.0.26.11.27")
    assert (rerun[0], rerun[1]) == (0, out)
    refused = await run("release", "cut", *where, "--version", "OS 3.0.26.11.28")
    assert (refused[0], refused[1]) == (5, "")
    assert "FAILED_PRECONDITION" in refused[2] and "released as 'OS 3.0.26.11.27'" in refused[2]

    idea = await ideas.ideas.GetIdea(ideas_pb.GetIdeaRequest(idea_id=shipped), metadata=ADMIN)
    assert idea.idea.status == status.IDEA_STATUS_SHIPPED

    notes_file = tmp_path / "notes.md"
    code, out, err = await run(
        "release", "notes", *where, "--format", "md", "--out", str(notes_file)
    )
    assert (code, out) == (0, ""), err
    text = notes_file.read_text(encoding="utf-8")
    assert text.startswith("# Release OS 3.0.26.11.27\n")
    assert "**Dark mode everywhere**" in text and "Battery saver" not in text
    code, out, err = await run("release", "notes", *where, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["products"][0]["shippedIdeas"][0]["ideaId"] == shipped


async def test_plan_sends_every_change_with_a_request_id(
    ideas: IdeasClients, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each change the plan command makes is remembered under its request id,
    so a call answered but lost on the way back is not applied twice."""
    run = Cli(ideas, capsys)
    product = await new_product(ideas)
    dropped = await submit(ideas, product, "author-1", "Idea planned, then unplanned")
    done = await submit(ideas, product, "author-2", "Idea planned and done")
    where = ("--product", product, "--iteration", "2026-W49")
    assert (await run("release", "plan", *where, dropped))[0] == 0
    changes = ("--unplan", dropped, "--done", done, "--freeze")
    code, _, err = await run("release", "plan", *where, *changes)
    assert code == 0, err

    remembered = await ideas.service.runtime.pool.fetch(
        "select method, count(*) as n from idempotent_requests "
        "where caller = 'release-bot' group by method"
    )
    assert {r["method"]: r["n"] for r in remembered} == {
        "ReleaseService.CreateIteration": 1,
        "ReleaseService.PlanIdea": 2,
        "ReleaseService.UnplanIdea": 1,
        "ReleaseService.MarkIdeaDone": 1,
        "ReleaseService.FreezeIteration": 1,
    }


async def test_exit_codes_say_what_went_wrong(
    ideas: IdeasClients, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Cli(ideas, capsys)
    product = await new_product(ideas)
    missing = await run("release", "status", "--product", product, "--iteration", "2030-W01")
    assert missing[0] == 3 and "no iteration named" in missing[2]
    denied = await run(
        "release", "plan", "--product", product, "--iteration", "2026-W48", role="member"
    )
    assert denied[0] == 4
    no_product = await run("release", "cut", "--iteration", "2026-W48", "--version", "v1")
    assert no_product[0] == 2
    no_target = await run("release", "notes", "--format", "md")
    assert no_target[0] == 2
