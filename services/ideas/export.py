"""ExportIdeas' two shapes of one query: ExportedIdea messages in batches read
through a server-side cursor, or CSV that Postgres renders itself (COPY) and
that passes through in pieces. Either way memory stays flat however many
ideas match. The CSV's SQL lives here because it is the export's format."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

import asyncpg
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb

from services.ideas import mappers
from services.ideas.store import TALLY_COLUMNS, IdeaQuery

# Ideas to an export message: the stream's cost is per message, the rows'
# per row; at 500 a message stays far under gRPC's 4 MiB limit.
EXPORT_BATCH = 500
# IdeaStatus numbers as the CSV export names them: IDEA_STATUS_PLANNED → planned.
STATUS_NAMES = {
    value.number: value.name.removeprefix("IDEA_STATUS_").lower()
    for value in idea_status_pb2.IdeaStatus.DESCRIPTOR.values
}


async def messages(
    pool: asyncpg.Pool, query: IdeaQuery, limit: int
) -> AsyncGenerator[pb.ExportIdeasResponse, None]:
    """The matching ideas as ExportedIdea messages, EXPORT_BATCH to a response."""
    batch: list[pb.ExportedIdea] = []
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        sql = query.export_sql(f"i.*, p.name as product_name, {TALLY_COLUMNS}", limit)
        # A server-side cursor (inside the transaction) fetching a batch at a time.
        async for row in conn.cursor(sql, *query.params, prefetch=EXPORT_BATCH):
            batch.append(mappers.exported_idea(row))
            if len(batch) == EXPORT_BATCH:
                yield pb.ExportIdeasResponse(ideas=batch)
                batch = []
    if batch:
        yield pb.ExportIdeasResponse(ideas=batch)


async def csv_pieces(
    pool: asyncpg.Pool, query: IdeaQuery, limit: int
) -> AsyncGenerator[pb.ExportIdeasResponse, None]:
    """The matching ideas as CSV pieces, then the row count in a last response.
    The queue is short, so COPY waits for a slow reader and memory stays
    flat; a reader that goes away cancels the COPY."""
    pieces: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)

    async def keep(piece: bytes | bytearray) -> None:
        await pieces.put(bytes(piece))  # asyncpg may hand a buffer it reuses

    async def copy() -> int:
        conn = await pool.acquire()
        try:
            count = await copy_csv(conn, query, limit, STATUS_NAMES, keep)
        except BaseException as stopped:
            # A COPY cut short leaves the connection inside the protocol;
            # the pool (which resets nothing on release) must not reuse it.
            conn.terminate()
            if isinstance(stopped, Exception):
                await pieces.put(None)  # wakes the reader, which then raises this error
            raise
        finally:
            await pool.release(conn)
        await pieces.put(None)
        return count

    copying = asyncio.create_task(copy())
    try:
        while (piece := await pieces.get()) is not None:
            yield pb.ExportIdeasResponse(csv=piece)
        yield pb.ExportIdeasResponse(csv_row_count=await copying)
    finally:
        if not copying.done():
            copying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await copying


def _float_text(column: str) -> str:
    """A double as Python's str() writes it: Postgres writes the same shortest
    digits but drops the `.0` of a whole number."""
    return (
        f"case when {column} = trunc({column}) and abs({column}) < 1e15 "
        f"then trunc({column})::bigint::text || '.0' else {column}::text end"
    )


def _csv_cells(status_names: Mapping[int, str]) -> dict[str, str]:
    """ExportedIdea's fields, in order, as SQL that renders each cell the way
    the CLI renders a row message (cli/export.py): enums by short name,
    timestamps ISO 8601 UTC to the second, lists `a;b`, maps `k=v;k=v` by key.
    Empty text becomes NULL, which COPY writes as an empty cell (an empty
    string it would quote)."""
    statuses = " ".join(f"when {number} then '{name}'" for number, name in status_names.items())
    return {
        "id": "i.id::text",
        "number": "i.number",
        "product_id": "i.product_id::text",
        "product_name": "nullif(p.name, '')",
        "title": "nullif(i.title, '')",
        "status": f"case i.status {statuses} else i.status::text end",
        "author_id": "nullif(i.author_id, '')",
        "create_time": """to_char(i.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')""",
        "weighted_score": "t.weighted_score",
        "voter_count": "t.voter_count",
        # Keys then `->>`: about 40 % cheaper than jsonb_each_text here.
        "voters_by_tier": (
            "(select string_agg(k || '=' || (t.voters_by_tier ->> k), ';' "
            'order by k collate "C") from jsonb_object_keys(t.voters_by_tier) k)'
        ),
        "trending_score": _float_text("t.trending_score"),
        "comment_count": "i.comment_count",
        "tags": "nullif(array_to_string(i.tags, ';'), '')",
    }


async def copy_csv(
    conn: asyncpg.Connection,
    query: IdeaQuery,
    limit: int,
    status_names: Mapping[int, str],
    output: Callable[[bytes | bytearray], Awaitable[None]],
) -> int:
    """The ideas `messages` would return, as CSV text Postgres renders
    (COPY … TO STDOUT), handed to `output` piece by piece as it arrives;
    returns how many ideas it held. COPY waits while `output` does."""
    cells = _csv_cells(status_names)
    select = ", ".join(f'{sql} as "{name}"' for name, sql in cells.items())
    status = await conn.copy_from_query(
        query.export_sql(select, limit), *query.params, output=output, format="csv", header=True
    )
    return int(status.split()[-1])


def csv_columns() -> list[str]:
    """The CSV header copy_csv writes."""
    return list(_csv_cells({}))
