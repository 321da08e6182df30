-- The status change each idea's supporters were last told (null when its
-- newest status is not one that is told), so a supporter who arrives after
-- it is told too: a vote moved by a merge whose event was handled after the
-- target's ship, though the merge came first at the ideas service.
alter table notified_idea_versions add column told jsonb;
