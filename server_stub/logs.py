"""Structured logs: one JSON object per line, built only from the ``fields`` a caller passes.

Handlers pass ids, routes, statuses and timings; never headers, bodies, keys or signatures. The
formatter does not look at anything else on the record, so a secret cannot leak by accident
through an exception's text or a stray attribute.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        doc: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.msg if isinstance(record.msg, str) else "event",
        }
        if isinstance(fields, dict):
            doc.update({k: v for k, v in fields.items() if k not in doc})
        return json.dumps(doc, separators=(",", ":"), default=str)


def configure(stream: TextIO = sys.stderr, level: int = logging.INFO) -> logging.Handler:
    """Send the server's logs to `stream` as JSON lines (the CLI calls this)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger("server_stub")
    root.addHandler(handler)
    root.setLevel(level)
    return handler
