"""The Postgres pool, transactions run again on a conflict, and the
migrations runner.

Migrations are plain SQL files named NNNN_description.sql, forward-only, each
applied in its own transaction and recorded in schema_migrations by
(component, version). The kit's own tables (outbox, inbox, dead letters,
idempotency, rate limits) are the component "kit"; each service's are its
own. A session advisory lock makes replicas that start together take turns.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from services.kit import log
from services.kit.errors import CONFLICT_ERRORS

T = TypeVar("T")

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any fixed number works; it only has to be the same for every replica.
_MIGRATION_LOCK = 0x636F637265617465  # "cocreate"

# How many times a transaction Postgres rolled back for a conflict is run,
# and the longest pause (times the attempt) before it runs again.
CONFLICT_ATTEMPTS = 3
CONFLICT_PAUSE_SECONDS = 0.02

_log = log.get("migrations")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_json_codec, reset=_keep_session
    )
    assert pool is not None
    return pool


async def in_transaction(
    pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """`work(conn)` in a transaction. One that Postgres rolled back for
    conflicting with another (a deadlock, a serialization failure) changed
    nothing, so it is run again, up to CONFLICT_ATTEMPTS times, before the
    conflict is raised: `work` must change nothing outside its connection."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except CONFLICT_ERRORS:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            # Apart by a little chance, so two that conflicted do not meet again.
            await asyncio.sleep(random.uniform(0, CONFLICT_PAUSE_SECONDS * attempt))
    raise AssertionError("unreachable")  # the last attempt returns or raises


@dataclass(frozen=True)
class Rows:
    """Rows to add to one table, given column by column: `columns` names each
    column with its Postgres type (`("idea_id", "text")`), `values` holds one
    list per column, all of one length. `notify` is the channel, if any, whose
    listeners hear of the rows once the transaction commits."""

    table: str
    columns: tuple[tuple[str, str], ...]
    values: tuple[Sequence[Any], ...]
    notify: str | None = None

    def __len__(self) -> int:
        return len(self.values[0]) if self.values else 0


@dataclass(frozen=True)
class Change:
    """A data-modifying statement (`insert … returning`, `update … returning`)
    to run in `write_all`'s one statement, as one of its CTEs. `sql` numbers
    its parameters from $1, as a statement of its own would (no `$` may appear
    in it otherwise: they are renumbered); `args` are their values. What it
    returns is counted, not read."""

    sql: str
    args: tuple[Any, ...]


_PARAMETER = re.compile(r"\$(\d+)")


async def write_all(
    conn: asyncpg.Connection, inserts: Sequence[Rows], changes: Sequence[Change] = ()
) -> list[int]:
    """Add every `Rows` and run every `Change` in one statement, one round trip
    whatever their number, and notify each channel the rows name once; how
    many rows each change returned, in order. A batch's write ends in several
    tables (its votes, its history, its marks, its remembered answers, its
    events): one statement each would be a round trip each.

    The parts of one statement run on one snapshot and none sees another's
    rows, so none may depend on what another writes."""
    parts: list[str] = []
    counted: list[str] = []
    args: list[Any] = []
    channels: list[str] = []
    for n, change in enumerate(changes):
        parts.append(f"changed{n} as ({_renumbered(change.sql, len(args))})")
        counted.append(f"(select count(*) from changed{n})::int")
        args.extend(change.args)
    for rows in inserts:
        if not len(rows):
            continue
        arrays = []
        for (_, kind), values in zip(rows.columns, rows.values, strict=True):
            args.append(list(values))
            arrays.append(f"${len(args)}::{kind}[]")
        names = ", ".join(name for name, _ in rows.columns)
        parts.append(
            f"added{len(parts)} as (insert into {rows.table} ({names}) "
            f"select * from unnest({', '.join(arrays)}))"
        )
        if rows.notify is not None and rows.notify not in channels:
            channels.append(rows.notify)
    if not parts:
        return []
    notices = []
    for channel in channels:
        args.append(channel)
        notices.append(f"pg_notify(${len(args)}, '')")
    outputs = [*counted, *notices] or ["true"]
    row = await conn.fetchrow(f"with {', '.join(parts)} select {', '.join(outputs)}", *args)
    assert row is not None
    return [row[n] for n in range(len(counted))]


@functools.lru_cache(maxsize=256)
def _renumbered(sql: str, offset: int) -> str:
    """`sql` with its parameters $1, $2, … renamed $(1 + offset), … (cached:
    a writer sends the same few statements on every write)."""
    return _PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


async def _json_codec(conn: asyncpg.Connection) -> None:
    """jsonb columns read as Python values and take them as parameters, so no
    caller encodes or decodes JSON by hand."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's reset query (RESET ALL, UNLISTEN *,
    pg_advisory_unlock_all, CLOSE ALL): one more round trip on every release,
    for session state our code never leaves behind — work runs in
    transactions, advisory locks are transaction-level (the migrations'
    session lock is released in a finally), LISTEN uses its own connections.
    asyncpg still rolls back a transaction left open before this is called."""


def migration_files(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path} must be named NNNN_description.sql")
        found.append((int(match.group(1)), path))
    return found


async def migrate(pool: asyncpg.Pool, components: Sequence[tuple[str, Path]]) -> list[str]:
    """Apply what is not applied yet; return the names of the files applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("select pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """
                create table if not exists schema_migrations (
                    component text not null,
                    version int not null,
                    name text not null,
                    applied_at timestamptz not null default now(),
                    primary key (component, version)
                )
                """
            )
            for component, folder in components:
                done = {
                    r["version"]
                    for r in await conn.fetch(
                        "select version from schema_migrations where component = $1", component
                    )
                }
                for version, path in migration_files(folder):
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(path.read_text(encoding="utf-8"))
                        await conn.execute(
                            "insert into schema_migrations (component, version, name) "
                            "values ($1, $2, $3)",
                            component,
                            version,
                            path.name,
                        )
                    applied_now.append(f"{component}/{path.name}")
                    _log.info("applied migration", extra={"migration": f"{component}/{path.name}"})
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
