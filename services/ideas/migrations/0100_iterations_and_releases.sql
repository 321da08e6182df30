-- Weekly iterations and release cuts (services/ideas/releases).

create table iterations (
    id uuid primary key,
    product_id uuid not null references products (id),
    name text not null,
    -- The cocreate.ideas.v1.IterationState number.
    state smallint not null,
    start_date date not null,
    end_date date not null,
    release_id uuid,
    created_by text not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    check (end_date >= start_date)
);
create unique index iterations_product_name on iterations (product_id, lower(name));
create index iterations_by_start on iterations (start_date desc, id desc);
create index iterations_product_by_start on iterations (product_id, start_date desc, id desc);

-- The ideas of an iteration and what became of them.
create table iteration_ideas (
    iteration_id uuid not null references iterations (id),
    idea_id uuid not null references ideas (id),
    -- The cocreate.ideas.v1.IterationIdeaOutcome number; 1 = planned (open).
    outcome smallint not null default 1,
    done boolean not null default false,
    planned_by text not null,
    planned_at timestamptz not null default now(),
    done_at timestamptz,
    primary key (iteration_id, idea_id)
);
-- An idea is in at most one open iteration.
create unique index iteration_ideas_open on iteration_ideas (idea_id) where outcome = 1;

create table releases (
    id uuid primary key,
    iteration_id uuid not null unique references iterations (id),
    product_id uuid not null references products (id),
    version text not null,
    next_iteration_id uuid references iterations (id),
    rolled_over_idea_ids uuid[] not null default '{}',
    dropped_idea_ids uuid[] not null default '{}',
    published_by text not null,
    published_at timestamptz not null default now(),
    number bigint generated always as identity unique
);
create unique index releases_product_version on releases (product_id, lower(version));

-- The shipped ideas as they stood at the cut: the notes do not change later.
create table release_ideas (
    release_id uuid not null references releases (id),
    idea_id uuid not null references ideas (id),
    number bigint not null,
    title text not null,
    author_id text not null,
    weighted_score bigint not null,
    voter_count bigint not null,
    voters_by_tier jsonb not null default '{}',
    primary key (release_id, idea_id)
);
