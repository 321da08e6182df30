-- Members' notifications (services/votes/notifications).

create table notifications (
    id bigint generated always as identity primary key,
    member_id text not null,
    -- The cocreate.votes.v1.NotificationKind number.
    kind smallint not null,
    text text not null,
    idea_id text not null default '',
    new_status int not null default 0,
    release_id text not null default '',
    target_idea_id text not null default '',
    points bigint not null default 0,
    tier text not null default '',
    -- What the notification is about, so one fact is told once per member.
    about text not null,
    read boolean not null default false,
    read_at timestamptz,
    created_at timestamptz not null default now()
);
create unique index notifications_once on notifications (member_id, about);
-- Unread first, then newest.
create index notifications_inbox on notifications (member_id, read, id desc);

-- The newest status version told per idea: an older status change that
-- arrives late is not told.
create table notified_idea_versions (
    idea_id text primary key,
    version bigint not null
);
