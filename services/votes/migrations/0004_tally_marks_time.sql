-- When each tally mark was written, so the folder's lag can be measured: the
-- age of the oldest mark not folded yet (cocreate_tally_lag_seconds).
-- now() is stable, so adding the column rewrites nothing.
alter table tally_dirty add column marked_at timestamptz not null default now();
