"""The CLI in production mode, and the error details it shows a person."""

from __future__ import annotations

import os

import jwt
import pytest

from services.kit import auth, config
from tests.cli.conftest import RunCli


@pytest.mark.parametrize("environment", ["production", ""])
async def test_token_refuses_outside_development(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("COCREATE_ENV", environment)
    monkeypatch.delenv("COCREATE_JWT_SECRET", raising=False)
    result = await run_cli("token", "--member", "m1", "--role", "admin")
    assert result.code == 4
    assert result.out == ""
    assert "outside development" in result.err


async def test_token_carries_the_configured_issuer_and_audience_and_respects_the_max_ttl(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COCREATE_JWT_SECRET", raising=False)
    monkeypatch.setenv("COCREATE_JWT_ISSUER", "https://id.example")
    monkeypatch.setenv("COCREATE_JWT_AUDIENCE", "cocreate")
    monkeypatch.setenv("COCREATE_JWT_MAX_TTL_SECONDS", "600")
    result = await run_cli("token", "--member", "m1", "--ttl", "600")
    assert result.code == 0
    claims = jwt.decode(
        result.out.strip(), config.DEV_JWT_SECRET, algorithms=["HS256"], audience="cocreate"
    )
    assert claims["iss"] == "https://id.example"
    policy = config.token_policy(os.environ)
    assert auth.verify_token("Bearer " + result.out.strip(), config.DEV_JWT_SECRET, policy)
    too_long = await run_cli("token", "--member", "m1", "--ttl", "601")
    assert too_long.code == 2
    assert "COCREATE_JWT_MAX_TTL_SECONDS=600" in too_long.err
