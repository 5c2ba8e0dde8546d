"""Structured (JSON lines) logging for the long-running commands, configured at the edge."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
#: ``extra`` values kept: plain JSON data. Objects (kopf passes its whole settings object with
#: every line) would be dumped as their repr, kilobytes a line.
_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)
#: Libraries whose DEBUG lines carry content: the openai client logs request bodies (the
#: messages), aiosqlite the statements' parameters and results, psycopg and httpcore the
#: traffic. They never log below INFO, whatever the level asked for: no message content or
#: stored text reaches the logs at any level.
CONTENT_LOGGERS = ("openai", "httpx", "httpcore", "aiosqlite", "psycopg", "hpack", "multipart")
#: Libraries whose INFO lines carry content: HTTP clients log each request's URL, which for an
#: HTTP tool holds the model's arguments (its query); the MCP SDK logs its traffic. WARNING and
#: above only.
TRAFFIC_LOGGERS = ("httpx", "httpx2", "mcp", "mcp_types")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the plain ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            {
                k: v
                for k, v in record.__dict__.items()
                if k not in _STANDARD and isinstance(v, _PLAIN)
            }
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    floor = max(root.level, logging.INFO)
    for name in CONTENT_LOGGERS:
        logging.getLogger(name).setLevel(floor)
    for name in TRAFFIC_LOGGERS:
        logging.getLogger(name).setLevel(max(floor, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests
