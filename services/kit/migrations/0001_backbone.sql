-- The event backbone every service shares: outbox, inbox, dead letters.

-- Events written in the same transaction as the state change they describe.
-- The relay publishes unpublished rows in id order and stamps published_at
-- only after JetStream acknowledged them.
create table outbox (
    id bigserial primary key,
    event_id uuid not null unique,
    subject text not null,
    envelope bytea not null,
    created_at timestamptz not null default now(),
    published_at timestamptz
);
create index outbox_unpublished on outbox (id) where published_at is null;

-- Events a consumer has handled, recorded in the transaction of the effect:
-- a redelivered event finds its row and changes nothing.
create table inbox (
    consumer text not null,
    event_id uuid not null,
    handled_at timestamptz not null default now(),
    primary key (consumer, event_id)
);

-- Events a consumer gave up on after its delivery limit, kept for replay.
create table dead_letters (
    id bigserial primary key,
    consumer text not null,
    event_id uuid not null,
    subject text not null,
    event_type text not null,
    envelope bytea not null,
    deliveries int not null,
    error text not null,
    parked_at timestamptz not null default now(),
    unique (consumer, event_id)
);

-- Answers to mutations that carried a request_id: a retry gets the first answer.
create table idempotent_requests (
    caller text not null,
    method text not null,
    request_id text not null,
    response bytea not null,
    created_at timestamptz not null default now(),
    primary key (caller, method, request_id)
);

-- Fixed-window counters for per-member rate limits, shared by all replicas.
create table rate_limit_windows (
    member_id text not null,
    action text not null,
    window_start timestamptz not null,
    hits int not null,
    primary key (member_id, action)
);
