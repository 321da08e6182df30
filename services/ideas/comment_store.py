"""SQL for the comments on ideas. Every function takes the caller's
connection; each change keeps the idea's comment count in the same
transaction."""

from __future__ import annotations

import uuid

import asyncpg


async def insert_comment(
    conn: asyncpg.Connection, idea_id: str, author_id: str, body: str, official: bool
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "insert into comments (id, idea_id, author_id, body, official) "
        "values ($1, $2, $3, $4, $5) returning *",
        uuid.uuid4(),
        uuid.UUID(idea_id),
        author_id,
        body,
        official,
    )
    await refresh_comment_count(conn, idea_id)
    return row


async def comment(
    conn: asyncpg.Connection, comment_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " for update" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select * from comments where id = $1{lock}", uuid.UUID(comment_id)
    )
    return row


async def update_comment(
    conn: asyncpg.Connection,
    comment_id: str,
    *,
    body: str | None = None,
    hidden_reason: str | None = None,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        """
        update comments set body = coalesce($2, body),
            hidden = hidden or $3::text is not null,
            hidden_reason = coalesce($3, hidden_reason), updated_at = now(),
            version = version + 1
        where id = $1 returning *
        """,
        uuid.UUID(comment_id),
        body,
        hidden_reason,
    )
    await refresh_comment_count(conn, str(row["idea_id"]))
    return row


async def delete_comment(conn: asyncpg.Connection, comment_id: str, idea_id: str) -> None:
    await conn.execute("delete from comments where id = $1", uuid.UUID(comment_id))
    await refresh_comment_count(conn, idea_id)


async def refresh_comment_count(conn: asyncpg.Connection, idea_id: str) -> None:
    await conn.execute(
        "update ideas set comment_count = "
        "(select count(*) from comments where idea_id = $1 and not hidden) where id = $1",
        uuid.UUID(idea_id),
    )


async def list_comments(
    conn: asyncpg.Connection, idea_id: str, *, include_hidden: bool, after_seq: int, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "select * from comments where idea_id = $1 and ($2 or not hidden) and seq > $3 "
        "order by seq limit $4",
        uuid.UUID(idea_id),
        include_hidden,
        after_seq,
        limit,
    )
    return rows
