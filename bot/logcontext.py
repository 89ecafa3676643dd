"""Who a log line is about, and the JSON log format (LOG_FORMAT=json).

Command handlers and job steps call `bind(...)` once; every line logged afterwards in that task (and
in tasks it starts) carries the ids, without passing them to each log call. Context variables are
per task, so concurrent jobs and interactions never see each other's ids.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FIELDS = ("job_id", "user_id", "interaction_id", "guild_id")
_context: dict[str, ContextVar[int | None]] = {name: ContextVar(name, default=None) for name in FIELDS}


def bind(**ids: int | None) -> None:
    """Attach ids (job_id, user_id, interaction_id, guild_id) to this task's later log lines."""
    for name, value in ids.items():
        _context[name].set(value)


def current() -> dict[str, int]:
    """The ids bound in this task."""
    return {name: value for name, var in _context.items() if (value := var.get()) is not None}


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record (as attributes), unless the call passed its own in `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context ids, `ref` and `exc` when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, "ref"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            entry["exc"] = exc
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
