"""Crash points for fault tests.

`COCREATE_FAILPOINTS=relay.after_publish` makes the process die at once
(os._exit, like kill -9: no cleanup, no finally blocks) when it reaches that
point. The fault tests use it to kill a relay between its JetStream publish
and its commit, or a consumer between its commit and its ack. Unset in
production, where `hit` is a set lookup.
"""

from __future__ import annotations

import os

_ARMED = frozenset(p for p in os.environ.get("COCREATE_FAILPOINTS", "").split(",") if p)

CRASH_EXIT_CODE = 137


def hit(name: str) -> None:
    if name in _ARMED:
        os._exit(CRASH_EXIT_CODE)
