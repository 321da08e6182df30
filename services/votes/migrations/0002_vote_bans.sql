-- Voting bans: a PM voiding a spam account's votes may also bar the member
-- from casting votes until a PM or admin lifts it. Append-only: every ban and
-- every lift is a row (who, when, why); a member is banned while their latest
-- row is a ban.
create table vote_bans (
    id bigserial primary key,
    member_id text not null,
    -- true: the ban was placed; false: it was lifted.
    banned boolean not null,
    actor_id text not null,
    reason text not null,
    occurred_at timestamptz not null default now()
);
create index vote_bans_by_member on vote_bans (member_id, id);
