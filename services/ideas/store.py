"""SQL for the ideas service's tables. Every function takes the caller's
connection, so a mutation, its history and its event share one transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

import asyncpg

from services.ideas import domain


class HistoryKind(IntEnum):
    """The cocreate.ideas.v1.IdeaHistoryKind numbers."""

    SUBMITTED = 1
    EDITED = 2
    STATUS_CHANGED = 3
    MERGED_INTO = 4
    MERGE_RECEIVED = 5
    HIDDEN = 6
    COMMENT_HIDDEN = 7
    UNHIDDEN = 8


class Order(IntEnum):
    """The cocreate.ideas.v1.IdeaOrder numbers."""

    TOP = 1
    TRENDING = 2
    NEWEST = 3
    MOST_DISCUSSED = 4


# The sort column of each order (besides NEWEST, which sorts on the unique number).
_SORT_COLUMN = {
    Order.TOP: ("i.weighted_score", "bigint"),
    Order.TRENDING: ("i.trending_score", "float8"),
    Order.MOST_DISCUSSED: ("i.comment_count", "int"),
}


@dataclass
class IdeaQuery:
    product_id: str = ""
    statuses: Sequence[int] = ()
    tag: str = ""
    author_id: str = ""
    text: str = ""
    include_hidden: bool = False
    created_after: datetime | None = None
    created_before: datetime | None = None
    order: Order = Order.NEWEST
    params: list[Any] = field(default_factory=list)

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def where(self) -> list[str]:
        clauses: list[str] = []
        if self.product_id:
            clauses.append(f"i.product_id = {self._param(uuid.UUID(self.product_id))}")
        if self.statuses:
            clauses.append(f"i.status = any({self._param(list(self.statuses))}::smallint[])")
        else:
            clauses.append(f"i.status <> {domain.MERGED}")
        if self.tag:
            clauses.append(f"i.tags @> array[{self._param(self.tag)}::text]")
        if self.author_id:
            clauses.append(f"i.author_id = {self._param(self.author_id)}")
        if self.text:
            pattern = self._param("%" + _escape_like(self.text) + "%")
            clauses.append(f"(i.title ilike {pattern} or i.body ilike {pattern})")
        if not self.include_hidden:
            clauses.append("not i.hidden")
        if self.created_after is not None:
            clauses.append(f"i.created_at >= {self._param(self.created_after)}")
        if self.created_before is not None:
            clauses.append(f"i.created_at < {self._param(self.created_before)}")
        return clauses

    def after(self, position: Mapping[str, Any]) -> str:
        """The keyset condition for the rows after `position` (a page token's)."""
        if self.order == Order.NEWEST:
            return f"i.number < {self._param(int(position['n']))}"
        column, kind = _SORT_COLUMN[self.order]
        value = self._param(position["k"])
        last_id = self._param(uuid.UUID(position["id"]))
        return f"({column}, i.id) < ({value}::{kind}, {last_id}::uuid)"

    def order_by(self) -> str:
        if self.order == Order.NEWEST:
            return "i.number desc"
        column, _ = _SORT_COLUMN[self.order]
        return f"{column} desc, i.id desc"

    def position_of(self, row: asyncpg.Record) -> dict[str, Any]:
        if self.order == Order.NEWEST:
            return {"n": row["number"]}
        column = _SORT_COLUMN[self.order][0].removeprefix("i.")
        return {"k": row[column], "id": str(row["id"])}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_IDEA_COLUMNS = """
    i.*, p.name as product_name,
    oc.id as oc_id, oc.author_id as oc_author_id, oc.body as oc_body,
    oc.created_at as oc_created_at, oc.updated_at as oc_updated_at
"""
_IDEA_FROM = """
    from ideas i
    join products p on p.id = i.product_id
    left join lateral (
        select c.id, c.author_id, c.body, c.created_at, c.updated_at from comments c
        where c.idea_id = i.id and c.official and not c.hidden
        order by c.seq desc limit 1
    ) oc on true
"""


def voters_by_tier(row: asyncpg.Record) -> dict[str, int]:
    raw = row["voters_by_tier"]
    parsed = json.loads(raw) if isinstance(raw, str) else raw
    return {str(k): int(v) for k, v in (parsed or {}).items()}


# Products


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
            updated_at = now()
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


# Ideas


async def insert_idea(
    conn: asyncpg.Connection,
    *,
    product_id: str,
    title: str,
    body: str,
    tags: list[str],
    author_id: str,
) -> str:
    idea_id = uuid.uuid4()
    await conn.execute(
        "insert into ideas (id, product_id, title, body, tags, status, author_id) "
        "values ($1, $2, $3, $4, $5, $6, $7)",
        idea_id,
        uuid.UUID(product_id),
        title,
        body,
        tags,
        domain.OPEN,
        author_id,
    )
    return str(idea_id)


async def idea(conn: asyncpg.Connection, idea_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_IDEA_COLUMNS} {_IDEA_FROM} where i.id = $1", uuid.UUID(idea_id)
    )
    return row


async def idea_id_by_number(conn: asyncpg.Connection, number: int) -> str | None:
    found = await conn.fetchval("select id from ideas where number = $1", number)
    return str(found) if found else None


async def lock_idea(conn: asyncpg.Connection, idea_id: str) -> asyncpg.Record | None:
    """The idea's own row, locked for the rest of the transaction."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from ideas where id = $1 for update", uuid.UUID(idea_id)
    )
    return row


async def merged_into(conn: asyncpg.Connection, idea_id: str) -> tuple[bool, str | None]:
    """Whether the idea exists, and the idea it was merged into."""
    row = await conn.fetchrow("select merged_into from ideas where id = $1", uuid.UUID(idea_id))
    if row is None:
        return False, None
    return True, str(row["merged_into"]) if row["merged_into"] else None


async def lock_ideas(conn: asyncpg.Connection, idea_ids: Sequence[str]) -> None:
    """Lock several ideas in id order, so two merges cannot deadlock."""
    await conn.execute(
        "select 1 from ideas where id = any($1::uuid[]) order by id for update",
        [uuid.UUID(i) for i in idea_ids],
    )


async def list_ideas(
    conn: asyncpg.Connection, query: IdeaQuery, after: Mapping[str, Any] | None, limit: int
) -> list[asyncpg.Record]:
    clauses = query.where()
    if after is not None:
        clauses.append(query.after(after))
    sql = (
        f"select {_IDEA_COLUMNS} {_IDEA_FROM} where {' and '.join(clauses)} "
        f"order by {query.order_by()} limit {query._param(limit)}"
    )
    rows: list[asyncpg.Record] = await conn.fetch(sql, *query.params)
    return rows


async def export_ideas(
    conn: asyncpg.Connection, query: IdeaQuery, limit: int, batch: int = 200
) -> AsyncIterator[asyncpg.Record]:
    """A server-side cursor (inside the caller's transaction): memory stays
    flat however many ideas match."""
    clauses = query.where()
    sql = (
        "select i.*, p.name as product_name from ideas i join products p on p.id = i.product_id "
        f"where {' and '.join(clauses)} order by {query.order_by()}"
    )
    if limit > 0:
        sql += f" limit {query._param(limit)}"
    async for row in conn.cursor(sql, *query.params, prefetch=batch):
        yield row


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
        "weighted_score": "i.weighted_score",
        "voter_count": "i.voter_count",
        # Keys then `->>`: about 40 % cheaper than jsonb_each_text here.
        "voters_by_tier": (
            "(select string_agg(k || '=' || (i.voters_by_tier ->> k), ';' "
            'order by k collate "C") from jsonb_object_keys(i.voters_by_tier) k)'
        ),
        "trending_score": _float_text("i.trending_score"),
        "comment_count": "i.comment_count",
        "tags": "nullif(array_to_string(i.tags, ';'), '')",
    }


async def export_csv(
    conn: asyncpg.Connection,
    query: IdeaQuery,
    limit: int,
    status_names: Mapping[int, str],
    output: Callable[[bytes | bytearray], Awaitable[None]],
) -> int:
    """The ideas `export_ideas` would return, as CSV text Postgres renders
    (COPY … TO STDOUT), handed to `output` piece by piece as it arrives;
    returns how many ideas it held. Memory stays flat: COPY waits while
    `output` does."""
    cells = _csv_cells(status_names)
    select = ", ".join(f'{sql} as "{name}"' for name, sql in cells.items())
    clauses = query.where()
    sql = (
        f"select {select} from ideas i join products p on p.id = i.product_id "
        f"where {' and '.join(clauses)} order by {query.order_by()}"
    )
    if limit > 0:
        sql += f" limit {query._param(limit)}"
    status = await conn.copy_from_query(
        sql, *query.params, output=output, format="csv", header=True
    )
    return int(status.split()[-1])


def csv_columns() -> list[str]:
    """The CSV header export_csv writes."""
    return list(_csv_cells({}))


async def similar_ideas(
    conn: asyncpg.Connection,
    *,
    title: str,
    body: str,
    product_id: str,
    include_hidden: bool,
    limit: int,
    threshold: float,
) -> list[tuple[asyncpg.Record, float]]:
    """Ideas ranked by trigram similarity of the title (and, weaker, the body).
    The thresholds are set for this transaction so the `%` operators can use
    the trigram indexes."""
    await conn.execute(
        "select set_config('pg_trgm.similarity_threshold', $1, true), "
        "set_config('pg_trgm.word_similarity_threshold', $1, true)",
        str(threshold),
    )
    rows = await conn.fetch(
        f"""
        select * from (
            select {_IDEA_COLUMNS},
                greatest(
                    similarity(i.title, $1),
                    word_similarity($1, i.title),
                    case when $2 = '' then 0
                         else 0.5 * similarity(i.body, $2) end
                ) as score
            {_IDEA_FROM}
            where i.status <> {domain.MERGED}
              and ($3::uuid is null or i.product_id = $3)
              and ($4 or not i.hidden)
              and (i.title % $1 or $1 <% i.title or ($2 <> '' and i.body % $2))
        ) ranked
        where score >= $5
        order by score desc, weighted_score desc, id
        limit $6
        """,
        title,
        body,
        uuid.UUID(product_id) if product_id else None,
        include_hidden,
        threshold,
        limit,
    )
    return [(row, float(row["score"])) for row in rows]


async def update_idea_text(
    conn: asyncpg.Connection,
    idea_id: str,
    *,
    title: str | None,
    body: str | None,
    tags: list[str] | None,
) -> int:
    version: int = await conn.fetchval(
        """
        update ideas set
            title = coalesce($2, title), body = coalesce($3, body), tags = coalesce($4, tags),
            updated_at = now(), version = version + 1
        where id = $1 returning version
        """,
        uuid.UUID(idea_id),
        title,
        body,
        tags,
    )
    return version


async def set_status(conn: asyncpg.Connection, idea_id: str, status: int) -> int:
    version: int = await conn.fetchval(
        "update ideas set status = $2, updated_at = now(), version = version + 1 "
        "where id = $1 returning version",
        uuid.UUID(idea_id),
        status,
    )
    return version


async def merge(
    conn: asyncpg.Connection, source_id: str, target_id: str, target_tags: list[str]
) -> int:
    """Source becomes MERGED into target; comments move; earlier merges into the
    source now point at the final target. Returns the source's new version."""
    source, target = uuid.UUID(source_id), uuid.UUID(target_id)
    version: int = await conn.fetchval(
        "update ideas set status = $2, merged_into = $3, comment_count = 0, "
        "updated_at = now(), version = version + 1 where id = $1 returning version",
        source,
        domain.MERGED,
        target,
    )
    await conn.execute("update ideas set merged_into = $2 where merged_into = $1", source, target)
    await conn.execute("update comments set idea_id = $2 where idea_id = $1", source, target)
    await conn.execute(
        "update ideas set tags = $2, updated_at = now(), version = version + 1 where id = $1",
        target,
        target_tags,
    )
    await refresh_comment_count(conn, target_id)
    return version


async def hide_idea(conn: asyncpg.Connection, idea_id: str, reason: str, spam: bool) -> int:
    version: int = await conn.fetchval(
        "update ideas set hidden = true, hidden_reason = $2, hidden_spam = $3, "
        "updated_at = now(), version = version + 1 where id = $1 returning version",
        uuid.UUID(idea_id),
        reason,
        spam,
    )
    return version


async def unhide_idea(conn: asyncpg.Connection, idea_id: str) -> int:
    version: int = await conn.fetchval(
        "update ideas set hidden = false, hidden_reason = '', hidden_spam = false, "
        "updated_at = now(), version = version + 1 where id = $1 returning version",
        uuid.UUID(idea_id),
    )
    return version


async def report_idea(conn: asyncpg.Connection, idea_id: str, reporter: str, reason: str) -> None:
    first = await conn.fetchval(
        "insert into idea_reports (idea_id, reporter_id, reason) values ($1, $2, $3) "
        "on conflict do nothing returning true",
        uuid.UUID(idea_id),
        reporter,
        reason,
    )
    if first:
        await conn.execute(
            "update ideas set report_count = report_count + 1 where id = $1", uuid.UUID(idea_id)
        )


async def list_reported_ideas(
    conn: asyncpg.Connection, product_id: str, after: Mapping[str, Any] | None, limit: int
) -> list[asyncpg.Record]:
    """Ideas with at least one report, hidden ones too, most reported first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        select {_IDEA_COLUMNS} {_IDEA_FROM}
        where i.report_count > 0
          and ($1::uuid is null or i.product_id = $1)
          and ($2::int is null or (i.report_count, i.id) < ($2, $3::uuid))
        order by i.report_count desc, i.id desc limit $4
        """,
        uuid.UUID(product_id) if product_id else None,
        int(after["k"]) if after else None,
        uuid.UUID(after["id"]) if after else None,
        limit,
    )
    return rows


async def apply_tallies(conn: asyncpg.Connection, tallies: Sequence[TallyUpdate]) -> int:
    """Apply each tally only if it is newer than the stored one, in one
    statement; how many applied."""
    if not tallies:
        return 0
    applied = await conn.fetch(
        """
        update ideas i set weighted_score = t.score, voter_count = t.voters,
            voters_by_tier = t.by_tier::jsonb, trending_score = t.trending,
            tally_version = t.version
        from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                    $6::float8[]) as t(id, version, score, voters, by_tier, trending)
        where i.id = t.id and i.tally_version < t.version
        returning i.id
        """,
        [uuid.UUID(t.idea_id) for t in tallies],
        [t.version for t in tallies],
        [t.weighted_score for t in tallies],
        [t.voter_count for t in tallies],
        [json.dumps(dict(t.by_tier), sort_keys=True) for t in tallies],
        [t.trending_score for t in tallies],
    )
    return len(applied)


@dataclass(frozen=True)
class TallyUpdate:
    idea_id: str
    version: int
    weighted_score: int
    voter_count: int
    by_tier: Mapping[str, int]
    trending_score: float


# History


async def add_history(
    conn: asyncpg.Connection,
    idea_id: str,
    kind: HistoryKind,
    actor_id: str,
    *,
    old_status: int = 0,
    new_status: int = 0,
    note: str = "",
    related_idea_id: str | None = None,
    previous_title: str = "",
    previous_body: str = "",
    previous_tags: Sequence[str] = (),
    changed_fields: Sequence[str] = (),
) -> None:
    await conn.execute(
        """
        insert into idea_history (idea_id, kind, actor_id, old_status, new_status, note,
            related_idea_id, previous_title, previous_body, previous_tags, changed_fields)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        uuid.UUID(idea_id),
        int(kind),
        actor_id,
        old_status,
        new_status,
        note,
        uuid.UUID(related_idea_id) if related_idea_id else None,
        previous_title,
        previous_body,
        list(previous_tags),
        list(changed_fields),
    )


async def list_history(
    conn: asyncpg.Connection, idea_id: str, after_id: int, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "select * from idea_history where idea_id = $1 and id > $2 order by id limit $3",
        uuid.UUID(idea_id),
        after_id,
        limit,
    )
    return rows


# Comments


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
            hidden_reason = coalesce($3, hidden_reason), updated_at = now()
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
