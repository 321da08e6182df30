"""`python -m services.<name> --migrate-only`, the migrations Jobs' command:
applies the service's migrations and exits, without NATS and without serving."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from deploy.localstack import SERVICES, LocalPostgres, free_port


async def migrate_only(service: str, database_url: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "COCREATE_ENV": "development",
        f"COCREATE_{service.upper()}_DATABASE_URL": database_url,
        # Nothing listens there: migrating must not need the broker.
        "COCREATE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "COCREATE_STARTUP_WAIT_SECONDS": "5",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"services.{service}", "--migrate-only",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.mark.parametrize("service", SERVICES)
async def test_migrate_only_applies_the_migrations_once_and_exits(
    postgres: LocalPostgres, service: str
) -> None:
    url = postgres.create_database(f"migrate_only_{service}")
    code, output = await migrate_only(service, url)
    assert code == 0, output
    conn = await asyncpg.connect(url)
    try:
        applied = await conn.fetch("select component, name from schema_migrations")
        assert {r["component"] for r in applied} == {"kit", service}
        # Run again (a Job retried, or a pod starting after it): nothing more.
        code, output = await migrate_only(service, url)
        assert code == 0, output
        assert await conn.fetch("select component, name from schema_migrations") == applied
    finally:
        await conn.close()


async def test_an_unknown_argument_is_refused() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.ideas", "--migrate-everything",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output_bytes, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "unrecognized arguments: --migrate-everything" in output_bytes.decode()
