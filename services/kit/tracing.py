"""W3C trace context carried from a call to the events it causes.

The interceptor takes the caller's `traceparent` metadata (or starts a trace),
the outbox stamps it on every event it writes, and the inbox consumer restores
it while a handler runs, so the events a handler emits continue the same trace.
"""

from __future__ import annotations

import contextvars
import re
import secrets

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("cocreate_traceparent", default="")


def current() -> str:
    return _current.get()


def continue_from(parent: str | None) -> str:
    """A traceparent for a new span in the trace of `parent` (a new trace if
    `parent` is missing or malformed)."""
    match = _TRACEPARENT.match(parent or "")
    trace_id = match.group(1) if match and set(match.group(1)) != {"0"} else secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def trace_id(traceparent: str) -> str:
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else ""


def set_current(traceparent: str) -> contextvars.Token[str]:
    return _current.set(traceparent)


def reset(token: contextvars.Token[str]) -> None:
    _current.reset(token)
