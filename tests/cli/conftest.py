"""Running `cocreate` in-process: it uses blocking gRPC, so it runs in a worker
thread while the services the test started keep answering in the event loop."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from cli.main import main
from services.kit import auth, config


def token(member_id: str = "a1", role: str = "admin") -> str:
    return auth.mint_token(member_id, role, config.DEV_JWT_SECRET)


@dataclass
class Result:
    code: int
    out: str
    err: str


RunCli = Callable[..., Awaitable[Result]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    async def run(*argv: str) -> Result:
        capsys.readouterr()
        out = io.StringIO()
        code = await asyncio.to_thread(main, list(argv), out)
        return Result(code, out.getvalue(), capsys.readouterr().err)

    return run
