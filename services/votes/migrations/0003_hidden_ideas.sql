-- Hidden ideas (from the ideas service's IdeaHidden and IdeaUnhidden): a
-- member can neither vote on nor read the tally of a hidden idea, as if it did
-- not exist. hidden_version orders hides and unhides (the idea's version).
alter table ideas
    add column hidden boolean not null default false,
    add column hidden_version bigint not null default 0;
