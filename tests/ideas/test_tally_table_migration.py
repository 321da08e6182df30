"""Migration 0103 moves the tally read model off the ideas' rows: a database
migrated before it, with ideas and their tallies, keeps every tally."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from services.ideas.service import DEFINITION
from services.kit import db
from tests.support import Platform

TALLY_TABLE_MIGRATION = 103


async def test_the_tallies_on_the_ideas_rows_move_to_idea_tallies(
    platform: Platform, tmp_path: Path
) -> None:
    assert DEFINITION.migrations is not None
    before = tmp_path / "migrations"
    before.mkdir()
    for version, path in db.migration_files(DEFINITION.migrations):
        if version < TALLY_TABLE_MIGRATION:
            shutil.copy(path, before / path.name)
    pool = await db.create_pool(platform.database_url("ideas"), min_size=1, max_size=2)
    try:
        await db.migrate(pool, [("kit", db.KIT_MIGRATIONS), ("ideas", before)])
        product = uuid.uuid4()
        await pool.execute("insert into products (id, name) values ($1, 'Phone OS')", product)
        ideas = [uuid.uuid4() for _ in range(3)]
        for n, idea in enumerate(ideas):
            await pool.execute(
                """
                insert into ideas (id, product_id, title, status, author_id, weighted_score,
                                   voter_count, voters_by_tier, trending_score, tally_version)
                values ($1, $2, $3, 1, 'author', $4, $5, $6, $7, $8)
                """,
                idea,
                product,
                f"Idea {n}",
                10 * n,
                n,
                {"core": n} if n else {},
                1.5 * n,
                n,
            )

        applied = await db.migrate(
            pool, [("kit", db.KIT_MIGRATIONS), ("ideas", DEFINITION.migrations)]
        )
        assert [name for name in applied if "0103_" in name] == ["ideas/0103_idea_tallies.sql"]
        moved = await pool.fetch(
            "select idea_id, product_id, weighted_score, voter_count, voters_by_tier, "
            "trending_score, tally_version from idea_tallies order by weighted_score"
        )
        assert [tuple(r) for r in moved] == [
            (idea, product, 10 * n, n, {"core": n} if n else {}, 1.5 * n, n)
            for n, idea in enumerate(ideas)
        ]
        left = await pool.fetchval(
            "select count(*) from information_schema.columns "
            "where table_name = 'ideas' and column_name in "
            "('weighted_score', 'voter_count', 'voters_by_tier', 'trending_score', "
            "'tally_version')"
        )
        assert left == 0
    finally:
        await pool.close()
