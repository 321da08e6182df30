"""SQL for the products table. Every function takes the caller's connection,
so a change shares the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg


async def insert_product(
    conn: asyncpg.Connection, name: str, description: str
) -> asyncpg.Record | None:
    """None when the name is taken (case-insensitively)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "insert into products (id, name, description) values ($1, $2, $3) "
        "on conflict (lower(name)) do nothing returning *",
        uuid.uuid4(),
        name,
        description,
    )
    return row


async def product(
    conn: asyncpg.Connection, product_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " for update" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select * from products where id = $1{lock}", uuid.UUID(product_id)
    )
    return row


async def name_taken(conn: asyncpg.Connection, name: str, except_id: str) -> bool:
    return bool(
        await conn.fetchval(
            "select exists(select 1 from products where lower(name) = lower($1) and id <> $2)",
            name,
            uuid.UUID(except_id),
        )
    )


async def update_product(
    conn: asyncpg.Connection,
    product_id: str,
    *,
    name: str | None,
    description: str | None,
    archived: bool | None = None,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        """
        update products set
            name = coalesce($2, name),
            description = coalesce($3, description),
            archived = coalesce($4, archived),
            updated_at = now(), version = version + 1
        where id = $1 returning *
        """,
        uuid.UUID(product_id),
        name,
        description,
        archived,
    )
    return row


async def list_products(
    conn: asyncpg.Connection, *, include_archived: bool, after: Mapping[str, Any] | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        select *, lower(name) as sort_name from products
        where ($1 or not archived)
          and ($2::text is null or (lower(name), id) > ($2, $3::uuid))
        order by lower(name), id limit $4
        """,
        include_archived,
        after["name"] if after else None,
        uuid.UUID(after["id"]) if after else None,
        limit,
    )
    return rows
