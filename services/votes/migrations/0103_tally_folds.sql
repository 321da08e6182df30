-- Each fold of the tallies: which replica folded (COCREATE_INSTANCE), from
-- its election to its last statement, and how many ideas. Replicas elect one
-- folder per fold; these rows show that no two folds ever overlapped. Kept
-- for a day.
create table tally_folds (
    id bigserial primary key,
    folded_by text not null,
    started_at timestamptz not null,
    finished_at timestamptz not null,
    ideas int not null
);
create index tally_folds_by_finish on tally_folds (finished_at);
