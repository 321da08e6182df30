"""The JSON log line: its timestamp, its fields, the call's `extra` fields and
nothing of the record's own bookkeeping, and a traceback when there is one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.kit.log import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("cocreate.test-lines")
    return logger.makeRecord(
        logger.name, logging.INFO, "", 0, "call %s", ("made",), None, extra=extra
    )


def test_a_line_carries_the_calls_fields_and_none_of_the_records_own() -> None:
    record = _record(service="votes", method="/x/Y", ms=1.25, caller="m1", thing=object())
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "call made"
    assert line["level"] == "info"
    assert line["logger"] == "cocreate.test-lines"
    assert {k: line[k] for k in ("service", "method", "ms", "caller")} == {
        "service": "votes", "method": "/x/Y", "ms": 1.25, "caller": "m1",
    }  # fmt: skip
    assert line["thing"].startswith("<object object")  # what JSON cannot hold, as text
    assert not {"args", "levelno", "pathname", "created", "msecs", "thread"} & set(line)


def test_the_timestamp_is_utc_to_the_millisecond() -> None:
    formatter = JsonFormatter()
    for created in (0.0, 1_796_579_285.9996, 1_796_579_285.0004, 1_796_579_286.5):
        record = _record()
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["ts"] == expected


def test_an_error_line_carries_its_traceback() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        logger = logging.getLogger("cocreate.test-lines")
        record = logger.makeRecord(logger.name, logging.ERROR, "", 0, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: broken" in line["exc"]
