"""Logs as JSON lines on stderr: one object per line, easy to grep and to ship.

A line written inside a span carries its `trace_id` and `span_id` (as hex,
as trace back ends show them), so a call's or an event's lines are found
from its trace and the other way round.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
import traceback
from typing import Any

from opentelemetry import trace

_RESERVED = set(vars(logging.makeLogRecord({})))
# A record's own attributes come first, in this number, then the `extra`
# fields a call gave (logging.Logger.makeRecord adds them after __init__).
_OWN_ATTRIBUTES = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """Every service writes a line per call, so the line is built with care:
    the timestamp's seconds are formatted once a second, the `extra` fields
    are found without testing every attribute, and one JSON encoder serves."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = trace.format_trace_id(span.trace_id)
            line["span_id"] = trace.format_span_id(span.span_id)
        for key, value in itertools.islice(vars(record).items(), _OWN_ATTRIBUTES, None):
            if key not in _RESERVED:
                line[key] = value
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return _ENCODER.encode(line)


def setup(level: str = "INFO") -> None:
    # The lines name no source line, thread or process, so logging need not
    # find them: walking the stack for the caller's frame alone cost a quarter
    # of a line (about 6 µs of 24), and every call writes a line.
    logging._srcfile = None  # the switch the logging HOWTO documents for this
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def get(name: str) -> logging.Logger:
    return logging.getLogger(f"cocreate.{name}")
