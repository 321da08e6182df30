-- The ideas service: products, ideas with their tally read model, comments,
-- history, reports.

-- Trigram similarity for "similar ideas" and indexed substring search. It
-- works for Chinese titles too: under the cluster's C.UTF-8 locale pg_trgm
-- treats CJK characters as word characters, so a run of them yields trigrams.
create extension if not exists pg_trgm;

create table products (
    id uuid primary key,
    name text not null,
    description text not null default '',
    archived boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create unique index products_name on products (lower(name));

create table ideas (
    id uuid primary key,
    number bigint generated always as identity unique,
    product_id uuid not null references products (id),
    title text not null,
    body text not null default '',
    tags text[] not null default '{}',
    -- The cocreate.ideas.v1.IdeaStatus number.
    status smallint not null,
    author_id text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Grows with every change; the aggregate version of the idea's events.
    version bigint not null default 1,
    -- The final target once merged (kept final when the target is merged on).
    merged_into uuid references ideas (id),
    hidden boolean not null default false,
    hidden_reason text not null default '',
    hidden_spam boolean not null default false,
    report_count int not null default 0,
    comment_count int not null default 0,
    -- The tally read model, from the votes service's TallyChanged events.
    weighted_score bigint not null default 0,
    voter_count bigint not null default 0,
    voters_by_tier jsonb not null default '{}',
    trending_score double precision not null default 0,
    tally_version bigint not null default 0
);
-- One index per list order, keyset-paged with id as the tie-breaker.
create index ideas_top on ideas (weighted_score desc, id desc);
create index ideas_trending on ideas (trending_score desc, id desc);
create index ideas_newest on ideas (number desc);
create index ideas_discussed on ideas (comment_count desc, id desc);
create index ideas_product_top on ideas (product_id, weighted_score desc, id desc);
create index ideas_product_trending on ideas (product_id, trending_score desc, id desc);
create index ideas_product_newest on ideas (product_id, number desc);
create index ideas_product_discussed on ideas (product_id, comment_count desc, id desc);
create index ideas_author on ideas (author_id, number desc);
create index ideas_tags on ideas using gin (tags);
create index ideas_title_trgm on ideas using gin (title gin_trgm_ops);
create index ideas_body_trgm on ideas using gin (body gin_trgm_ops);
create index ideas_merged_into on ideas (merged_into) where merged_into is not null;

create table comments (
    id uuid primary key,
    idea_id uuid not null references ideas (id),
    author_id text not null,
    body text not null,
    official boolean not null default false,
    hidden boolean not null default false,
    hidden_reason text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Tie-breaker and page position within an idea.
    seq bigint generated always as identity unique
);
create index comments_idea on comments (idea_id, seq);

create table idea_history (
    id bigint generated always as identity primary key,
    idea_id uuid not null references ideas (id),
    kind smallint not null,
    actor_id text not null,
    occurred_at timestamptz not null default now(),
    old_status smallint not null default 0,
    new_status smallint not null default 0,
    note text not null default '',
    related_idea_id uuid,
    previous_title text not null default '',
    previous_body text not null default '',
    previous_tags text[] not null default '{}',
    changed_fields text[] not null default '{}'
);
create index idea_history_idea on idea_history (idea_id, id);

create table idea_reports (
    idea_id uuid not null references ideas (id),
    reporter_id text not null,
    reason text not null default '',
    reported_at timestamptz not null default now(),
    primary key (idea_id, reporter_id)
);
