"""SQL for the shop's tables: the catalogue and members' redemptions, each
function on the caller's connection. A redemption's points leave through
ledger.py; shop.py ties the two together."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from services.kit.errors import NotFound


async def create_item(
    conn: asyncpg.Connection, name: str, description: str, price: int, stock: int
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "insert into catalogue_items (id, name, description, price, stock) "
        "values ($1, $2, $3, $4, $5) returning *",
        uuid.uuid4(),
        name,
        description,
        price,
        stock,
    )
    assert row is not None
    return row


async def get_item(
    conn: asyncpg.Connection, item_id: uuid.UUID, *, lock: bool = False
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "select * from catalogue_items where id = $1" + (" for update" if lock else ""), item_id
    )
    if row is None:
        raise NotFound("catalogue item", str(item_id))
    return row


async def update_item(
    conn: asyncpg.Connection,
    item_id: uuid.UUID,
    *,
    name: str | None,
    description: str | None,
    price: int | None,
    stock: int | None,
    available: bool | None,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        update catalogue_items set
            name = coalesce($2, name),
            description = coalesce($3, description),
            price = coalesce($4, price),
            stock = coalesce($5, stock),
            available = coalesce($6, available),
            updated_at = now()
        where id = $1
        returning *
        """,
        item_id,
        name,
        description,
        price,
        stock,
        available,
    )
    if row is None:
        raise NotFound("catalogue item", str(item_id))
    return row


async def list_items(
    conn: asyncpg.Connection,
    after: tuple[str, str] | None,
    limit: int,
    *,
    include_unavailable: bool,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from catalogue_items where ($1::bool or available) "
            "and ($2::text is null or (name, id) > ($2, $3::uuid)) "
            "order by name, id limit $4",
            include_unavailable,
            after[0] if after else None,
            uuid.UUID(after[1]) if after else None,
            limit,
        )
    )


async def take_one_from_stock(conn: asyncpg.Connection, item_id: uuid.UUID) -> None:
    await conn.execute(
        "update catalogue_items set stock = stock - 1, updated_at = now() where id = $1", item_id
    )


async def record_redemption(
    conn: asyncpg.Connection,
    redemption_id: uuid.UUID,
    member_id: str,
    item_id: uuid.UUID,
    price: int,
    entry_id: uuid.UUID,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "with r as (insert into redemptions (id, member_id, item_id, price, entry_id) "
        "values ($1, $2, $3, $4, $5) returning *) "
        "select r.*, c.name as item_name from r join catalogue_items c on c.id = r.item_id",
        redemption_id,
        member_id,
        item_id,
        price,
        entry_id,
    )
    assert row is not None
    return row


async def list_redemptions(
    conn: asyncpg.Connection,
    member_id: str,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A member's redemptions with their item's name, newest first."""
    return list(
        await conn.fetch(
            "select r.*, c.name as item_name from redemptions r "
            "join catalogue_items c on c.id = r.item_id "
            "where r.member_id = $1 "
            "and ($2::timestamptz is null or (r.created_at, r.id) < ($2, $3::uuid)) "
            "order by r.created_at desc, r.id desc limit $4",
            member_id,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
    )
