-- Products and comments grow a version with every change, as ideas do, so an
-- update can carry the etag the caller read and fail (ABORTED) when another
-- change came first.
alter table products add column version bigint not null default 1;
alter table comments add column version bigint not null default 1;
