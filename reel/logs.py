"""Structured logs: one JSON object per line, with the task's context on every line.

The worker loop binds video, segment, topic, partition, offset and attempt for the
duration of a task (`task_context`); every log call inside it carries them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from reel.redact import redact

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "reel_log_context", default=MappingProxyType({})
)
CONTEXT_KEYS = ("video_id", "segment", "track", "topic", "partition", "offset", "attempt")


@contextlib.contextmanager
def task_context(**fields: Any) -> Iterator[None]:
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),  # no presigned URL reaches a log
        }
        line.update(getattr(record, "reel_context", None) or _context.get())
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


def setup(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
