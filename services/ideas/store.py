"""SQL for ideas, their history and the tallies' read model (products are in
product_store.py, comments in comment_store.py, the export's own SQL in
export.py). Every function takes the caller's connection, so a mutation, its
history and its event share one transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

import asyncpg

from services.ideas import comment_store, domain


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


# The sort column of each order (besides NEWEST, which sorts on the unique
# number) and the id that breaks its ties: the scores are in the tally read
# model (`t`, idea_tallies), whose indexes hold them with its idea_id.
_SORT_COLUMN = {
    Order.TOP: ("t.weighted_score", "bigint", "t.idea_id"),
    Order.TRENDING: ("t.trending_score", "float8", "t.idea_id"),
    Order.MOST_DISCUSSED: ("i.comment_count", "int", "i.id"),
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
            product = self._param(uuid.UUID(self.product_id))
            # Both copies of the product, so the planner may read a product's
            # ideas in the order of either table's index.
            clauses.append(f"i.product_id = {product} and t.product_id = {product}")
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
        column, kind, tie = _SORT_COLUMN[self.order]
        value = self._param(position["k"])
        last_id = self._param(uuid.UUID(position["id"]))
        return f"({column}, {tie}) < ({value}::{kind}, {last_id}::uuid)"

    def order_by(self) -> str:
        if self.order == Order.NEWEST:
            return "i.number desc"
        column, _, tie = _SORT_COLUMN[self.order]
        return f"{column} desc, {tie} desc"

    def export_sql(self, columns: str, limit: int) -> str:
        """Every matching idea, joined to its product and its tally, in order
        (the first `limit`, when positive)."""
        sql = (
            f"select {columns} from ideas i join products p on p.id = i.product_id "
            f"join idea_tallies t on t.idea_id = i.id "
            f"where {' and '.join(self.where())} order by {self.order_by()}"
        )
        if limit > 0:
            sql += f" limit {self._param(limit)}"
        return sql

    def position_of(self, row: asyncpg.Record) -> dict[str, Any]:
        if self.order == Order.NEWEST:
            return {"n": row["number"]}
        column = _SORT_COLUMN[self.order][0].partition(".")[2]
        return {"k": row[column], "id": str(row["id"])}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The tally read model's columns, from idea_tallies `t`.
TALLY_COLUMNS = (
    "t.weighted_score, t.voter_count, t.voters_by_tier, t.trending_score, t.tally_version"
)

_IDEA_COLUMNS = f"""
    i.*, p.name as product_name, {TALLY_COLUMNS},
    oc.id as oc_id, oc.author_id as oc_author_id, oc.body as oc_body,
    oc.created_at as oc_created_at, oc.updated_at as oc_updated_at, oc.version as oc_version
"""
_IDEA_FROM = """
    from ideas i
    join products p on p.id = i.product_id
    join idea_tallies t on t.idea_id = i.id
    left join lateral (
        select c.id, c.author_id, c.body, c.created_at, c.updated_at, c.version from comments c
        where c.idea_id = i.id and c.official and not c.hidden
        order by c.seq desc limit 1
    ) oc on true
"""


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
    # The idea's tally row comes with it: every idea has one (the lists join it).
    await conn.execute(
        "with idea as ("
        "    insert into ideas (id, product_id, title, body, tags, status, author_id)"
        "    values ($1, $2, $3, $4, $5, $6, $7) returning id, product_id"
        ") insert into idea_tallies (idea_id, product_id) select id, product_id from idea",
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


async def lock_merge(conn: asyncpg.Connection, source_id: str, target_id: str) -> None:
    """Lock, in id order, every idea row a merge of source into target writes:
    both ideas and the ideas merged into the source earlier (they are pointed
    at the target)."""
    await conn.execute(
        "select 1 from ideas where id = any($1::uuid[]) or merged_into = $2 order by id for update",
        [uuid.UUID(source_id), uuid.UUID(target_id)],
        uuid.UUID(source_id),
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
    await comment_store.refresh_comment_count(conn, target_id)
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
    statement; how many applied. Only the tally read model is written: the
    ideas' own rows are not touched, so nothing that writes them (an edit, a
    merge, a release cut) waits for a tally or makes one wait."""
    if not tallies:
        return 0
    ids = [uuid.UUID(t.idea_id) for t in tallies]
    # The join below would lock rows in whatever order the plan reads them;
    # two batches lock theirs in id order first, so they cannot deadlock.
    await conn.execute(
        "select 1 from idea_tallies where idea_id = any($1::uuid[]) order by idea_id for update",
        ids,
    )
    # `idea_id = any(...)` beside the join: the rows are found by their key,
    # not by a scan of the table, whatever the cached plan's statistics say.
    applied = await conn.fetch(
        """
        update idea_tallies s set weighted_score = t.score, voter_count = t.voters,
            voters_by_tier = t.by_tier::jsonb, trending_score = t.trending,
            tally_version = t.version
        from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                    $6::float8[]) as t(id, version, score, voters, by_tier, trending)
        where s.idea_id = t.id and s.idea_id = any($1::uuid[]) and s.tally_version < t.version
        returning s.idea_id
        """,
        ids,
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
