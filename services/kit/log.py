"""Logs as JSON lines on stderr: one object per line, easy to grep and to ship.

A line written inside a span carries its `trace_id` and `span_id` (as hex,
as trace back ends show them), so a call's or an event's lines are found
from its trace and the other way round.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = trace.format_trace_id(span.trace_id)
            line["span_id"] = trace.format_span_id(span.span_id)
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


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
