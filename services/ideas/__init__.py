"""The ideas service: products, ideas, comments, the status workflow, merges,
moderation, history, export, and the vote tallies kept from the votes events.

Decisions worth knowing:
- Text is stored and returned exactly (trimmed only), control characters
  included; only NUL is refused, because Postgres cannot store it. Whatever
  shows a text on one line (CLI tables, Markdown, release notes) makes control
  characters visible through services.kit.text.one_line.
- Similar ideas use pg_trgm. Under the cluster's C.UTF-8 locale pg_trgm counts
  CJK characters as word characters, so a Chinese title yields trigrams and
  finds its near-duplicate (tested); no bigram fallback is needed.
- Lists page by keyset on (sort column, id) — newest on the unique `number` —
  with an index per order, so equal scores never skip or repeat an idea.
- The tallies' read model is a table of its own (idea_tallies, one row per
  idea, written with the idea): a tally changes with every vote, and on the
  idea's row each change rewrote the row and added entries to every index of
  it, the trigram indexes of the title and body among them (migration 0103).
- Settings: COCREATE_IDEAS_EDIT_WINDOW_SECONDS (3600),
  COCREATE_IDEAS_IDEAS_PER_HOUR (10), COCREATE_IDEAS_COMMENTS_PER_MINUTE (5),
  COCREATE_IDEAS_SIMILARITY_THRESHOLD (0.15). Rate limits apply to members;
  0 switches a limit off.
"""
