"""A service process's garbage collector, once started (services/kit/collector.py)."""

from __future__ import annotations

import gc

from services.kit import collector


def test_once_started_startup_objects_are_frozen_and_young_collections_are_rarer() -> None:
    thresholds = gc.get_threshold()
    try:
        made_at_startup = [object(), {"a": [1, 2]}]
        collector.tune_after_start()
        assert gc.get_freeze_count() > 0
        # Frozen: in no generation the collector walks any more.
        assert gc.is_tracked(made_at_startup)
        assert all(found is not made_at_startup for found in gc.get_objects())
        assert gc.get_threshold() == (
            collector.YOUNG_THRESHOLD,
            collector.OLDER_THRESHOLD,
            collector.OLDER_THRESHOLD,
        )
    finally:  # this test process keeps the interpreter's defaults
        gc.unfreeze()
        gc.set_threshold(*thresholds)
