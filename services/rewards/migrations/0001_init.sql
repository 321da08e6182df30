-- The rewards service: accounts, the append-only hash-chained ledger, reward
-- rules (versioned), tiers, the catalogue and redemptions, and the replicas of
-- ideas and supporters it learns from the ideas and votes events.

create table accounts (
    member_id text primary key,
    balance bigint not null default 0 check (balance >= 0),
    lifetime_points bigint not null default 0 check (lifetime_points >= 0),
    earned_tier text not null default 'newcomer',
    granted_tier text,
    tier text not null default 'newcomer',
    tier_version bigint not null default 0,
    -- The chain of each account starts from a hash of its own random seed.
    seed bytea not null,
    entry_count bigint not null default 0,
    last_hash bytea not null,
    created_at timestamptz not null default now()
);

create table ledger_entries (
    id uuid primary key,
    member_id text not null references accounts (member_id),
    seq bigint not null check (seq > 0),
    amount bigint not null check (amount <> 0),
    balance_after bigint not null check (balance_after >= 0),
    kind text not null
        check (kind in ('earn', 'reversal', 'grant', 'deduction', 'redemption')),
    reason text not null,
    source text not null,
    rule_id text not null default '',
    rule_version bigint not null default 0,
    actor_id text not null,
    -- What makes the reward unique for its rule and member: the idea, the
    -- request, the redemption. Unique with them, so a replay cannot pay twice.
    award_key text not null,
    -- When the source event or request happened (daily caps count by it).
    occurred_at timestamptz not null,
    created_at timestamptz not null,
    hash bytea not null,
    unique (member_id, seq),
    unique (member_id, rule_id, award_key)
);
create index ledger_entries_by_rule_day on ledger_entries (member_id, rule_id, occurred_at);
create index ledger_entries_by_time on ledger_entries (occurred_at);

-- History is never changed: any UPDATE, DELETE or TRUNCATE of the ledger fails.
create function ledger_entries_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'ledger_entries is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;
create trigger ledger_entries_no_update_or_delete
    before update or delete on ledger_entries
    for each row execute function ledger_entries_append_only();
create trigger ledger_entries_no_truncate
    before truncate on ledger_entries
    for each statement execute function ledger_entries_append_only();

create table reward_rules (
    rule_id text primary key,
    version bigint not null,
    points bigint not null check (points >= 0),
    daily_cap int not null check (daily_cap >= 0),
    enabled boolean not null,
    description text not null,
    updated_at timestamptz not null default now(),
    updated_by text not null
);

create table reward_rule_versions (
    rule_id text not null references reward_rules (rule_id),
    version bigint not null,
    points bigint not null,
    daily_cap int not null,
    enabled boolean not null,
    updated_at timestamptz not null,
    updated_by text not null,
    primary key (rule_id, version)
);

insert into reward_rules (rule_id, version, points, daily_cap, enabled, description, updated_by)
values
    ('idea_submitted', 1, 5, 3, true, 'the author of a submitted idea', 'system'),
    ('idea_accepted', 1, 50, 0, true,
     'the author, once per idea, when it is taken under review or planned (or later)', 'system'),
    ('idea_shipped_author', 1, 500, 0, true, 'the author of a shipped idea', 'system'),
    ('idea_shipped_supporter', 1, 20, 0, true,
     'each member who supported an idea when it shipped', 'system'),
    ('vote_cast', 1, 1, 10, true, 'a member casting a vote, once per idea', 'system');
insert into reward_rule_versions (rule_id, version, points, daily_cap, enabled, updated_at, updated_by)
select rule_id, version, points, daily_cap, enabled, updated_at, updated_by from reward_rules;

create table tier_changes (
    member_id text not null references accounts (member_id),
    version bigint not null,
    old_tier text not null,
    new_tier text not null,
    reason text not null,
    actor_id text not null,
    changed_at timestamptz not null default now(),
    primary key (member_id, version)
);

create table catalogue_items (
    id uuid primary key,
    name text not null,
    description text not null,
    price bigint not null check (price > 0),
    stock bigint not null check (stock >= 0),
    available boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index catalogue_items_by_name on catalogue_items (name, id);

create table redemptions (
    id uuid primary key,
    member_id text not null references accounts (member_id),
    item_id uuid not null references catalogue_items (id),
    price bigint not null,
    entry_id uuid not null references ledger_entries (id),
    created_at timestamptz not null default now()
);

-- Ideas as the ideas events describe them: who wrote each, where it is.
create table ideas (
    idea_id text primary key,
    author_id text not null default '',
    status int not null default 0,
    status_version bigint not null default 0,
    hidden_as_spam boolean not null default false,
    shipped_at timestamptz
);

-- Who supports which idea, from the votes events (latest vote version wins).
create table supporters (
    idea_id text not null,
    member_id text not null,
    active boolean not null,
    vote_version bigint not null,
    changed_at timestamptz not null,
    primary key (idea_id, member_id)
);
create index supporters_active on supporters (idea_id) where active;
