"""The event topology is declared once: each event's subject on its message,
each service's handlers in its consumer tables; docs/events.md is generated
from both and must say what the code runs."""

from __future__ import annotations

from pathlib import Path

from services.kit import events, topology

PAGE = Path(__file__).parents[2] / "docs" / "events.md"


def test_the_events_page_is_generated_from_the_declarations() -> None:
    assert PAGE.read_text() == topology.page(), "docs/events.md is stale: run make events-page"


def test_every_handled_event_has_a_declared_subject_and_a_producer() -> None:
    handled = topology.subscriptions()
    assert set(handled) <= set(events.SUBJECTS)
    producers = {message.full_name: producer for producer, message in topology.event_messages()}
    for event, takers in handled.items():
        # A subject names its producer (cocreate.<service>.…), and no service
        # consumes its own events through the broker.
        assert events.SUBJECTS[event].split(".")[1] == producers[event]
        assert all(taker.service != producers[event] for taker in takers)
