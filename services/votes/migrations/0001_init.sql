-- The votes service: ideas and member tiers learnt from events, the weight
-- policy, votes with their history, and tallies folded from the votes.

-- Ideas as the ideas service announced them; only open ideas take votes.
create table ideas (
    idea_id text primary key,
    status int not null,
    open boolean not null,
    merged_into text,
    version bigint not null,
    updated_at timestamptz not null default now()
);

-- Member tiers from the rewards service; an absent member counts at the lowest tier.
create table members (
    member_id text primary key,
    tier text not null,
    version bigint not null,
    updated_at timestamptz not null default now()
);

-- The tier → weight table: one row.
create table weight_policy (
    singleton boolean primary key default true check (singleton),
    weights jsonb not null,
    version bigint not null,
    updated_at timestamptz not null default now(),
    updated_by text not null
);
insert into weight_policy (weights, version, updated_by)
values ('{"newcomer": 1, "member": 2, "core": 3, "honorary": 5}', 1, 'default');

-- One row per (idea, member): at most one active vote by construction.
-- version grows with every cast and retract of the vote.
create table votes (
    idea_id text not null,
    member_id text not null,
    weight bigint not null check (weight > 0),
    tier text not null,
    active boolean not null,
    cast_at timestamptz not null,
    retracted_at timestamptz,
    version bigint not null,
    primary key (idea_id, member_id)
);
create index votes_by_member on votes (member_id, cast_at desc, idea_id) where active;
create index votes_supporters on votes (idea_id, cast_at, member_id) where active;

-- Audit: every cast, retract and re-weight, append-only.
create table vote_history (
    id bigserial primary key,
    idea_id text not null,
    member_id text not null,
    action smallint not null,
    cause smallint not null,
    weight bigint not null,
    previous_weight bigint not null,
    tier text not null,
    actor_id text not null default '',
    note text not null default '',
    occurred_at timestamptz not null default now()
);
create index vote_history_by_idea on vote_history (idea_id, id);

-- Append-only marks "this idea's votes changed": writers never share a row,
-- and the single tally folder turns them into tallies.
create table tally_dirty (
    id bigserial primary key,
    idea_id text not null
);

-- The folded tallies; only the folder writes them.
create table tallies (
    idea_id text primary key,
    version bigint not null,
    weighted_score bigint not null,
    voter_count bigint not null,
    voters_by_tier jsonb not null,
    trending_score float8 not null,
    updated_at timestamptz not null default now()
);

-- PM actions voiding a spam account's votes.
create table vote_voids (
    id bigserial primary key,
    member_id text not null,
    actor_id text not null,
    reason text not null,
    voided_vote_count bigint not null,
    idea_ids text[] not null,
    voided_at timestamptz not null default now()
);
