-- The index of an idea's active votes also holds each vote's tier and weight,
-- so the tally fold's recount (services/votes/store/tallies.py) reads an
-- idea's active votes from the index alone where the visibility map allows,
-- instead of visiting a heap page for nearly every vote: the recount was the
-- costliest statement per vote once ideas carry tens of votes (bench/LIMITS.md).
create index votes_supporters_covering on votes (idea_id, cast_at, member_id)
    include (tier, weight) where active;
drop index votes_supporters;
alter index votes_supporters_covering rename to votes_supporters;
