-- The tally read model in a table of its own, one row per idea.
--
-- On the idea's row every TallyChanged rewrote the whole row (title, body
-- and all) and, the score columns being indexed, added an entry to each of
-- the row's seventeen indexes, the trigram indexes of the title and the body
-- among them: with bodies of a few hundred characters that was about 250 µs
-- of Postgres per changed idea, about 35 µs without them (bench/LIMITS.md),
-- and every vote changes an idea. Here a tally change rewrites a narrow row
-- and the four indexes that order by score; the idea's row, its text and its
-- other indexes are left alone.
--
-- product_id is a copy of the idea's (an idea never changes product), so a
-- product's top and trending lists read one index in order.
create table idea_tallies (
    idea_id uuid primary key references ideas (id),
    product_id uuid not null,
    weighted_score bigint not null default 0,
    voter_count bigint not null default 0,
    voters_by_tier jsonb not null default '{}',
    trending_score double precision not null default 0,
    tally_version bigint not null default 0
);

insert into idea_tallies (idea_id, product_id, weighted_score, voter_count, voters_by_tier,
                          trending_score, tally_version)
select id, product_id, weighted_score, voter_count, voters_by_tier, trending_score, tally_version
from ideas;

create index idea_tallies_top on idea_tallies (weighted_score desc, idea_id desc);
create index idea_tallies_trending on idea_tallies (trending_score desc, idea_id desc);
create index idea_tallies_product_top on idea_tallies (product_id, weighted_score desc, idea_id desc);
create index idea_tallies_product_trending
    on idea_tallies (product_id, trending_score desc, idea_id desc);

drop index ideas_top, ideas_trending, ideas_product_top, ideas_product_trending;
alter table ideas
    drop column weighted_score,
    drop column voter_count,
    drop column voters_by_tier,
    drop column trending_score,
    drop column tally_version;
