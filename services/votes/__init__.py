"""The votes service: weighted votes on ideas by member tier, exact tallies
folded by a single writer (tallies.py), trending scores (domain.py),
re-weighting on tier changes and moving votes on duplicate merges
(handlers.py).

Settings (besides the kit's):
- COCREATE_VOTES_CAST_LIMIT (default 120): casts per member per window;
  0 switches the limit off.
- COCREATE_VOTES_CAST_WINDOW_SECONDS (default 60): the rate limit's window.
- COCREATE_VOTES_FOLD_POLL_SECONDS (default 0.5): how often the tally folder
  looks for changes when no NOTIFY woke it.
"""
