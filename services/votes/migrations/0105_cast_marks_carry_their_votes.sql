-- A cast's tally mark carries what the cast adds to its idea's tally (the
-- vote's weight, its tier and its trending term), so the folder adds it to
-- the stored tally instead of recounting every active vote of the idea. A
-- mark without them (a retract, a ban or void, a reweight, a merge) still
-- asks for a recount (services/votes/tallies.py).
alter table tally_dirty
    add column weight bigint,
    add column tier text,
    add column trend float8;
